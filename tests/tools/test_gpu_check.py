"""The CPU-side parts of scripts/gpu_check.sh: its step recorder, the parity comparison, the JSON summary."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tools.gpu_check import build_parser, compare_tracks, main, read_steps, summarize
from tracker.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"


def _face(shift_px: float, arkit_delta: float):
    lm = np.arange(136, dtype=np.float64).reshape(68, 2)
    lm[0] += shift_px  # one point moves
    return lm, np.full(52, 0.3) + arkit_delta


def test_compare_tracks_exact_figures():
    ref = [_face(0, 0), _face(0, 0), None, _face(0, 0)]
    cand = [_face(0, 0), _face(3.0, 0.01), None, None]
    p = compare_tracks(ref, cand)
    assert (p.frames, p.missing) == (2, 1)
    assert p.landmark_max_px == pytest.approx(3.0 * np.sqrt(2))
    # 136 distances, one of them non-zero: the 95th percentile is 0.
    assert p.landmark_p95_px == 0.0
    assert p.arkit_max == pytest.approx(0.01)
    assert p.passes() and not p.passes(max_arkit=0.005)
    assert not compare_tracks([None], [None]).passes(), "nothing compared is not a pass"
    with pytest.raises(ConfigError, match="differ in length"):
        compare_tracks([None], [])


def test_step_function_records_exit_codes_and_times(tmp_path):
    func = SCRIPT.read_text().split("step() {", 1)[1].split("\n}\n", 1)[0]
    script = f'DIR={tmp_path}\n: > "$DIR/steps.tsv"\nstep() {{{func}\n}}\nstep good 5 true\nstep bad 5 false\nstep late 1 sleep 5\n'
    subprocess.run(["bash", "-c", script], check=True, capture_output=True, timeout=30)
    steps = read_steps(tmp_path / "steps.tsv")
    assert [(s["name"], s["rc"], s["ok"]) for s in steps] == [("good", 0, True), ("bad", 1, False), ("late", 124, False)]
    assert 0.9 <= steps[2]["seconds"] < 5, "the deadline cut the step"
    assert (tmp_path / "good.log").is_file()


def test_summary_folds_the_run_folder(tmp_path):
    (tmp_path / "steps.tsv").write_text("install\t0\t61.5\nbuild\t0\t40.0\nparity\t0\t30.2\n")
    (tmp_path / "parity.json").write_text(json.dumps({"passes": True, "overall": {"landmark_p95_px": 0.2}}))
    (tmp_path / "bench.json").write_text(json.dumps({"rows": [{"batch": 64, "p50_ms": 1.5}]}))
    (tmp_path / "machine.txt").write_text("NVIDIA H200, 570.1, 143771 MiB\n")
    out = tmp_path / "summary.json"
    assert main(["summary", "--dir", str(tmp_path), "--out", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["passes"] and s["total_seconds"] == 131.7 and s["failed_steps"] == []
    assert s["results"]["bench"]["rows"][0]["batch"] == 64 and s["machine"].startswith("NVIDIA H200")
    # A failed step, or parity not passing, fails the whole check.
    (tmp_path / "steps.tsv").write_text("install\t0\t61.5\ngpu_tests\t1\t20.0\n")
    assert summarize(tmp_path)["failed_steps"] == ["gpu_tests"] and not summarize(tmp_path)["passes"]
    (tmp_path / "steps.tsv").write_text("install\t0\t61.5\n")
    (tmp_path / "parity.json").write_text(json.dumps({"passes": False}))
    assert main(["summary", "--dir", str(tmp_path), "--out", str(out)]) == 1


def test_malformed_steps_file_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "steps.tsv").write_text("install 0 61.5\n")
    assert main(["summary", "--dir", str(tmp_path), "--out", str(tmp_path / "s.json")]) == 2
    assert "steps.tsv:1: expected 'name<TAB>exit code<TAB>seconds'" in capsys.readouterr().err


def test_parser_defaults():
    args = build_parser().parse_args(["parity", "--out", "p.json"])
    assert (args.backend, args.precision, args.max_landmark_px, args.max_arkit) == ("tensorrt", "fp16", 0.5, 0.02)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["parity"])  # --out is required


def test_script_runs_every_step_of_the_check():
    text = SCRIPT.read_text()
    for name in ("install", "build", "gpu_tests", "parity", "bench", "e2e"):
        assert f"step {name} " in text, name
    assert "--batch 1,8,64,256" in text and "pip uninstall -q -y onnxruntime" in text
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_parity_runs_the_real_pipeline_on_a_clip(tmp_path, shared_data):
    # ONNX Runtime against itself on the CPU: the comparison path is real and the figures are exactly 0.
    out = tmp_path / "parity.json"
    assert main(["parity", "--videos", str(shared_data / "videos"), "--clips", "1", "--frames", "4",
                 "--backend", "onnxruntime", "--out", str(out)]) == 0  # fmt: skip
    r = json.loads(out.read_text())
    assert r["passes"] and r["overall"]["frames"] == 4 and r["overall"]["missing"] == 0
    assert r["overall"]["landmark_max_px"] == 0.0 and r["overall"]["arkit_max"] == 0.0
