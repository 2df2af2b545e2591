"""The one inference interface every backend implements, in the manner of NVIDIA Polygraphy's runners.

An :class:`Engine` is created cheaply, then ``activate()`` loads the model (builds a session, deserialises
an engine, allocates buffers), ``infer(feed)`` maps input names to arrays and returns output names to
arrays, and ``deactivate()`` frees everything. Engines are context managers::

    with create_engine(path) as engine:
        engine.warmup()
        outputs = engine.infer({"input": x})

The base class checks every feed against the model's input metadata before the backend sees it, so a
wrong name, rank, fixed dimension or dtype gives one clear :class:`~tracker.core.errors.EngineError` naming the
engine and the expected inputs, whatever the backend. It also times every call: ``last_ms`` and a
rolling window for p50/p95 (:class:`LatencyStats`).
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np

from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

#: One dimension of a tensor shape: a fixed size, a symbolic name (``"batch"``) or None (dynamic, unnamed).
Dim = int | str | None


def _fmt_dim(d: Dim) -> str:
    return "?" if d is None else str(d)


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output.

    Attributes:
        name: Tensor name as the model declares it.
        shape: One entry per axis: an int for a fixed size, a str (symbolic name such as ``"batch"``) or
            None for a dynamic size; ``None`` for the whole shape when even the rank is unknown (e.g.
            the outputs of a torch module before it has run).
        dtype: numpy dtype of the tensor.
    """

    name: str
    shape: tuple[Dim, ...] | None
    dtype: np.dtype = dataclasses.field(default=np.dtype(np.float32))

    def __post_init__(self) -> None:
        if not self.name:
            raise EngineError("TensorSpec.name must be a non-empty string")
        if self.shape is not None:
            dims = tuple(self.shape)
            for d in dims:
                if not (d is None or isinstance(d, str) or (isinstance(d, int | np.integer) and d >= 0)):
                    raise EngineError(f"TensorSpec {self.name!r}: bad dimension {d!r} in shape {dims}")
            object.__setattr__(
                self, "shape", tuple(int(d) if isinstance(d, int | np.integer) else d for d in dims)
            )
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    @property
    def is_dynamic(self) -> bool:
        """True when the rank is unknown or any dimension is not a fixed size."""
        return self.shape is None or any(not isinstance(d, int) for d in self.shape)

    def describe(self) -> str:
        """E.g. ``"input[batch,3,height,width] float32"``."""
        dims = "?*" if self.shape is None else ",".join(_fmt_dim(d) for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype}"

    def concrete_shape(self, dynamic: int | Mapping[str, int] = 1) -> tuple[int, ...]:
        """A concrete shape with every dynamic dimension replaced.

        Args:
            dynamic: Size for every dynamic dimension, or a mapping from symbolic dimension names (and
                ``"*"`` for the rest) to sizes; unmapped dynamic dimensions become 1.

        Raises:
            EngineError: when the rank is unknown.
        """
        if self.shape is None:
            raise EngineError(f"{self.name}: rank unknown, give an explicit shape")
        out = []
        for d in self.shape:
            if isinstance(d, int):
                out.append(d)
            elif isinstance(dynamic, Mapping):
                out.append(
                    int(dynamic.get(d, dynamic.get("*", 1))) if d is not None else int(dynamic.get("*", 1))
                )
            else:
                out.append(int(dynamic))
        return tuple(out)


def describe_specs(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(s.describe() for s in specs) or "(none)"


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Summary of recent ``infer()`` call times, milliseconds (wall clock, as the caller sees them)."""

    count: int
    last_ms: float
    mean_ms: float
    p50_ms: float
    p95_ms: float
    min_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


class LatencyRecorder:
    """Rolling window of call durations.

    Args:
        window: How many of the most recent calls the percentiles cover.
    """

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise EngineError(f"timing window must be >= 1 call, got {window}")
        self._ms: collections.deque[float] = collections.deque(maxlen=window)
        self.last_ms = float("nan")

    def record(self, ms: float) -> None:
        self.last_ms = float(ms)
        self._ms.append(float(ms))

    def reset(self) -> None:
        self._ms.clear()
        self.last_ms = float("nan")

    def __len__(self) -> int:
        return len(self._ms)

    def stats(self) -> LatencyStats:
        """Percentiles over the window; NaN everywhere when nothing was recorded."""
        if not self._ms:
            nan = float("nan")
            return LatencyStats(0, nan, nan, nan, nan, nan, nan)
        a = np.fromiter(self._ms, dtype=np.float64)
        p50, p95 = np.percentile(a, [50, 95])
        return LatencyStats(
            len(a), self.last_ms, float(a.mean()), float(p50), float(p95), float(a.min()), float(a.max())
        )


class Engine(abc.ABC):
    """Base class of every inference backend.

    Subclasses set :attr:`backend` and implement :meth:`_activate`, :meth:`_deactivate`, :meth:`_infer`,
    :meth:`_input_specs` and :meth:`_output_specs`; this class provides the activation state, feed
    validation, the context manager, warm-up and timing.

    Args:
        name: Human-readable name used in messages (e.g. the model file's stem).
        timing_window: How many recent calls :meth:`latency` summarises.
    """

    #: Backend name as ``create_engine(backend=...)`` spells it.
    backend: str = ""

    def __init__(self, name: str, timing_window: int = 1000) -> None:
        self.name = name
        self._active = False
        self._timing = LatencyRecorder(timing_window)

    # ------------------------------------------------------------------ subclass hooks
    @abc.abstractmethod
    def _activate(self) -> None:
        """Loads the model and allocates resources; raises EngineError on failure."""

    @abc.abstractmethod
    def _deactivate(self) -> None:
        """Frees what :meth:`_activate` allocated. Must not raise for a half-activated engine."""

    @abc.abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the model on a validated, contiguous feed; returns every output by name."""

    @abc.abstractmethod
    def _input_specs(self) -> tuple[TensorSpec, ...]:
        """Input metadata (called only while active)."""

    @abc.abstractmethod
    def _output_specs(self) -> tuple[TensorSpec, ...]:
        """Output metadata (called only while active)."""

    # ------------------------------------------------------------------ life cycle
    @property
    def is_active(self) -> bool:
        return self._active

    def activate(self) -> Engine:
        """Loads the model. Calling it on an active engine does nothing. Returns ``self``."""
        if self._active:
            return self
        try:
            self._activate()
        except BaseException:
            # Leave nothing half-allocated behind a failed activation.
            try:
                self._deactivate()
            except Exception:  # noqa: BLE001 - the activation error is the one worth reporting
                log.debug("%s: cleanup after failed activation also failed", self, exc_info=True)
            raise
        self._active = True
        log.debug(
            "%s activated: inputs %s; outputs %s",
            self,
            describe_specs(self.inputs),
            describe_specs(self.outputs),
        )
        return self

    def deactivate(self) -> None:
        """Frees the model's resources. Safe to call twice."""
        if not self._active:
            return
        try:
            self._deactivate()
        finally:
            self._active = False

    def __enter__(self) -> Engine:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {'active' if self._active else 'inactive'})"

    def _require_active(self, what: str) -> None:
        if not self._active:
            raise EngineError(f"{self}: {what} needs an active engine; call activate() or use `with engine:`")

    # ------------------------------------------------------------------ metadata
    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """Input metadata, in the model's order."""
        self._require_active("inputs")
        return self._input_specs()

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """Output metadata, in the model's order."""
        self._require_active("outputs")
        return self._output_specs()

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    # ------------------------------------------------------------------ inference
    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the model.

        Args:
            feed: One array per model input, by name. Arrays of another numeric dtype of the same kind
                (e.g. float64 for a float32 input, uint8 for float32) are converted; others are refused.

        Returns:
            Every model output by name, as numpy arrays the caller owns.

        Raises:
            EngineError: for a missing/unknown input name, a wrong rank, fixed dimension or dtype, or a
                failure inside the runtime.
        """
        self._require_active("infer()")
        checked = self.check_feed(feed)
        t0 = time.perf_counter_ns()
        out = self._infer(checked)
        self._timing.record((time.perf_counter_ns() - t0) / 1e6)
        return out

    def infer_batched(self, name: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`infer` on a one-input model, in chunks of the engine's ``max_batch_size`` when it has one
        (a Triton model's limit; 0 or absent: one call), the outputs concatenated back in order."""
        limit = int(getattr(self, "max_batch_size", 0) or 0)
        if limit <= 0 or len(batch) <= limit:
            return self.infer({name: batch})
        chunks = [self.infer({name: batch[i:i + limit]}) for i in range(0, len(batch), limit)]
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validates ``feed`` against :attr:`inputs`; returns contiguous arrays of the declared dtypes."""
        specs = self.inputs
        if not isinstance(feed, Mapping):
            raise EngineError(f"{self}: feed must map input names to arrays, got {type(feed).__name__}")
        want = {s.name for s in specs}
        missing = [n for n in want if n not in feed]
        unknown = [n for n in feed if n not in want]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing input(s) {', '.join(map(repr, sorted(missing)))}")
            if unknown:
                parts.append(f"unknown input(s) {', '.join(map(repr, sorted(unknown)))}")
            raise EngineError(f"{self}: {'; '.join(parts)}. The model takes: {describe_specs(specs)}")
        out: dict[str, np.ndarray] = {}
        named: dict[str, tuple[int, str]] = {}  # symbolic dim name -> (size, which input fixed it)
        for spec in specs:
            arr = feed[spec.name]
            if not isinstance(arr, np.ndarray):
                try:
                    arr = np.asarray(arr)
                except (TypeError, ValueError) as exc:
                    raise EngineError(f"{self}: input {spec.name!r} is not array-like: {exc}") from exc
            if spec.shape is not None:
                bad = arr.ndim != len(spec.shape) or any(
                    isinstance(d, int) and d != n for d, n in zip(spec.shape, arr.shape, strict=False)
                )
                if bad:
                    raise EngineError(
                        f"{self}: input {spec.name!r} has shape {tuple(arr.shape)}, expected "
                        f"[{','.join(_fmt_dim(d) for d in spec.shape)}] (? and names are free sizes)"
                    )
                for d, n in zip(spec.shape, arr.shape, strict=True):
                    if isinstance(d, str):
                        if d in named and named[d][0] != n:
                            raise EngineError(
                                f"{self}: dimension {d!r} is {n} in input {spec.name!r} but {named[d][0]} in "
                                f"input {named[d][1]!r}; inputs that share a named dimension must agree"
                            )
                        named.setdefault(d, (n, spec.name))
            if arr.dtype != spec.dtype:
                if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
                    raise EngineError(
                        f"{self}: input {spec.name!r} has dtype {arr.dtype}, expected {spec.dtype} "
                        f"(no safe conversion)"
                    )
                arr = arr.astype(spec.dtype)
            out[spec.name] = np.ascontiguousarray(arr)
        return out

    def warmup(self, n: int = 3, shapes: Mapping[str, Sequence[int]] | None = None) -> None:
        """Runs ``n`` inferences on zero inputs so lazy allocation and kernel selection happen now.

        The warm-up calls are left out of :meth:`latency`.

        Args:
            n: Number of calls.
            shapes: Concrete input shapes; inputs not named here use their declared shape with every
                dynamic dimension set to 1 (too small for some models: then give the shapes).
        """
        self._require_active("warmup()")
        shapes = dict(shapes or {})
        feed = {
            s.name: np.zeros(
                tuple(shapes[s.name]) if s.name in shapes else s.concrete_shape(1), dtype=s.dtype
            )
            for s in self.inputs
        }
        for _ in range(max(0, int(n))):
            self.infer(feed)
        self._timing.reset()

    # ------------------------------------------------------------------ timing
    @property
    def last_ms(self) -> float:
        """Duration of the last ``infer()`` call in ms (NaN before the first)."""
        return self._timing.last_ms

    def latency(self) -> LatencyStats:
        """p50/p95/mean of the recent ``infer()`` calls (validation and copies included)."""
        return self._timing.stats()

    def reset_timing(self) -> None:
        self._timing.reset()

    def describe(self) -> str:
        """Multi-line summary: backend, name, inputs and outputs."""
        lines = [f"{self.backend} engine {self.name!r}"]
        if self._active:
            lines += [f"  in:  {s.describe()}" for s in self.inputs]
            lines += [f"  out: {s.describe()}" for s in self.outputs]
        return "\n".join(lines)


__all__ = ["Dim", "Engine", "LatencyRecorder", "LatencyStats", "TensorSpec", "describe_specs"]
