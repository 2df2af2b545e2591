"""Small models for the engine contract tests, each in three equivalent forms.

Every :class:`ToyModel` has fixed random weights and gives: an ONNX file (built with ``onnx.helper``, a
few KB, dynamic batch), a ``torch.nn.Module`` with the same weights, and a float64 numpy reference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engines.base import TensorSpec

OPSET = 17
IR_VERSION = 9  # what TensorRT 10 and ONNX Runtime both read


@dataclasses.dataclass
class ToyModel:
    name: str
    inputs: list[TensorSpec]
    outputs: list[str]
    weights: dict[str, np.ndarray]
    build_graph: Callable  # (helper, TensorProto, numpy_helper, weights) -> GraphProto
    reference: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], dict[str, np.ndarray]]
    torch_module: Callable  # (weights) -> nn.Module

    def write_onnx(self, folder: Path) -> Path:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        graph = self.build_graph(helper, TensorProto, numpy_helper, self.weights)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="facetrack-tests"
        )
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        path = Path(folder) / f"{self.name}.onnx"
        onnx.save(model, str(path))
        return path

    def feed(self, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {s.name: rng.normal(size=s.concrete_shape(batch)).astype(np.float32) for s in self.inputs}


def _conv2d_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 convolution, stride 1, zero padding 1, float64."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (N,C,H,W,3,3)
    return np.einsum("nchwij,ocij->nohw", win, w) + b[None, :, None, None]


# ---------------------------------------------------------------------------------------------- conv_mlp
def _conv_mlp_graph(helper, TP, nh, w):
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["features"]),
        helper.make_node("Flatten", ["features"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w2"], ["mm"]),
        helper.make_node("Add", ["mm", "b2"], ["logits"]),
    ]
    inits = [nh.from_array(w[k].astype(np.float32), k) for k in ("w1", "b1", "w2", "b2")]
    return helper.make_graph(
        nodes, "conv_mlp",
        [helper.make_tensor_value_info("x", TP.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TP.FLOAT, ["batch", 5]),
         helper.make_tensor_value_info("features", TP.FLOAT, ["batch", 4, 8, 8])],
        inits,
    )  # fmt: skip


def _conv_mlp_ref(feed, w):
    x = feed["x"].astype(np.float64)
    f = np.maximum(_conv2d_ref(x, w["w1"], w["b1"]), 0.0)
    return {"logits": f.reshape(len(x), -1) @ w["w2"] + w["b2"], "features": f}


def _conv_mlp_torch(w):
    import torch

    class ConvMlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for k, v in w.items():
                self.register_buffer(k, torch.from_numpy(v.astype(np.float32)))

        def forward(self, x):
            f = torch.relu(torch.nn.functional.conv2d(x, self.w1, self.b1, padding=1))
            return f.flatten(1) @ self.w2 + self.b2, f

    return ConvMlp()


# ---------------------------------------------------------------------------------------------- two_inputs
def _two_inputs_graph(helper, TP, nh, w):
    nodes = [
        helper.make_node("MatMul", ["a", "wa"], ["ma"]),
        helper.make_node("MatMul", ["b", "wb"], ["mb"]),
        helper.make_node("Add", ["ma", "mb"], ["s"]),
        helper.make_node("Tanh", ["s"], ["mixed"]),
        helper.make_node("Mul", ["a", "b"], ["product"]),
    ]
    inits = [nh.from_array(w[k].astype(np.float32), k) for k in ("wa", "wb")]
    return helper.make_graph(
        nodes, "two_inputs",
        [helper.make_tensor_value_info("a", TP.FLOAT, ["batch", 6]),
         helper.make_tensor_value_info("b", TP.FLOAT, ["batch", 6])],
        [helper.make_tensor_value_info("mixed", TP.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("product", TP.FLOAT, ["batch", 6])],
        inits,
    )  # fmt: skip


def _two_inputs_ref(feed, w):
    a, b = feed["a"].astype(np.float64), feed["b"].astype(np.float64)
    return {"mixed": np.tanh(a @ w["wa"] + b @ w["wb"]), "product": a * b}


def _two_inputs_torch(w):
    import torch

    class TwoInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("wa", torch.from_numpy(w["wa"].astype(np.float32)))
            self.register_buffer("wb", torch.from_numpy(w["wb"].astype(np.float32)))

        def forward(self, a, b):
            return {"mixed": torch.tanh(a @ self.wa + b @ self.wb), "product": a * b}

    return TwoInputs()


def toy_models() -> list[ToyModel]:
    rng = np.random.default_rng(1234)
    f32 = lambda *s, scale=0.3: (rng.normal(size=s) * scale).astype(np.float32).astype(np.float64)  # noqa: E731
    return [
        ToyModel(
            "conv_mlp", [TensorSpec("x", ("batch", 3, 8, 8))], ["logits", "features"],
            {"w1": f32(4, 3, 3, 3), "b1": f32(4), "w2": f32(256, 5, scale=0.1), "b2": f32(5)},
            _conv_mlp_graph, _conv_mlp_ref, _conv_mlp_torch,
        ),
        ToyModel(
            "two_inputs", [TensorSpec("a", ("batch", 6)), TensorSpec("b", ("batch", 6))], ["mixed", "product"],
            {"wa": f32(6, 3), "wb": f32(6, 3)},
            _two_inputs_graph, _two_inputs_ref, _two_inputs_torch,
        ),
    ]  # fmt: skip
