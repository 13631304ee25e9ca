"""``optimize``: candidates from a device profile, built in parallel and resumable, checked against the
device, benchmarked here for a local profile, the fastest passing one chosen and the reasons written down."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import ConfigError, ValidationError

pytestmark = pytest.mark.workstation
pytest.importorskip("tensorflow")

LOCAL = """\
name: {name}
description: this machine, ONNX only
arch: x86_64
host: local
runtimes:
  onnxruntime: {{providers: [CPUExecutionProvider]}}
formats: [onnx]
precisions:
  fp32: {{accelerated: true}}
  int8: {{accelerated: false}}
preferred: {{format: onnx, precision: fp32}}
"""

FULL_INT8_TFLITE_ONLY = """\
name: {name}
description: a TFLite accelerator that runs full-integer models only, with no CPU path for float
arch: aarch64
runtimes:
  litert: {{delegates: [xnnpack]}}
formats: [tflite]
precisions:
  fp32: {{accelerated: false}}
accelerator:
  name: test accelerator
  formats: [tflite]
  precisions: [int8]
  full_integer: true
  fallback: error
preferred: {{format: tflite, precision: fp32}}
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from edgecv.synthetic import shape_images

    root = tmp_path_factory.mktemp("opt-data")
    calib, _ = shape_images(64, size=16, seed=7)
    images, labels = shape_images(200, size=16, seed=1)
    np.save(root / "calib.npy", calib)
    np.savez(root / "eval.npz", x=images, y=labels)
    return root / "calib.npy", root / "eval.npz"


def profile(tmp_path: Path, text: str, name: str = "test-device") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.format(name=name))
    return path


def test_builds_checks_benchmarks_and_chooses_then_resumes(tiny_keras_path, data, tmp_path):
    from edgecv.converters.optimize import OptimizeOptions, optimize

    calib, eval_data = data
    device = profile(tmp_path, LOCAL)
    out = tmp_path / "out"
    result = optimize(tiny_keras_path, device=device, calib=calib, eval_data=eval_data, max_drop=5.0, out=out,
                      labels=["circle", "square", "triangle", "cross"], options=OptimizeOptions(runs=20, workers=2))
    assert [c.name for c in result.candidates] == ["onnx-fp32", "onnx-int8"]
    assert result.benchmarked_on == "local" and all(c.p50_ms is not None for c in result.candidates)
    chosen = result.chosen
    assert chosen is not None and chosen.verdict == "chosen" and chosen.why.startswith("fastest that passes")
    assert chosen.p50_ms == min(c.p50_ms for c in result.candidates)
    other = next(c for c in result.candidates if c is not chosen)
    assert other.verdict == "lost" and "slower than" in other.why
    assert all(c.compat["ok"] for c in result.candidates)
    for c in result.candidates:
        assert abs(c.build["drop_points"]) <= 5.0
    # the chosen artifact and its manifest are copied to OUT, with the reports
    assert (out / chosen.path.name).is_file() and (out / f"{chosen.path.name}.json").is_file()
    saved = json.loads((out / "optimize.json").read_text())
    assert saved["chosen"]["path"] == str(chosen.path) and len(saved["candidates"]) == 2
    assert "| onnx-int8 |" in (out / "optimize.md").read_text() and (out / "report.png").stat().st_size > 1000

    # a second run reuses both finished candidates; a changed budget rebuilds them
    again = optimize(tiny_keras_path, device=device, calib=calib, eval_data=eval_data, max_drop=5.0, out=out,
                     labels=["circle", "square", "triangle", "cross"], options=OptimizeOptions(runs=20))
    assert all(c.resumed for c in again.candidates)
    assert [c.build for c in again.candidates] == [c.build for c in result.candidates]


def test_a_killed_candidate_is_rebuilt_and_the_others_are_kept(tiny_keras_path, data, tmp_path):
    from edgecv.converters.optimize import CANDIDATE_FILE, OptimizeOptions, optimize

    calib, eval_data = data
    device = profile(tmp_path, LOCAL)
    out = tmp_path / "out"
    first = optimize(tiny_keras_path, device=device, calib=calib, eval_data=eval_data, max_drop=5.0, out=out,
                     options=OptimizeOptions(runs=5, workers=1))
    # as if the run had been killed while int8 was being built: its record is gone, a partial file remains
    (out / "candidates" / "onnx-int8" / CANDIDATE_FILE).unlink()
    second = optimize(tiny_keras_path, device=device, calib=calib, eval_data=eval_data, max_drop=5.0, out=out,
                      options=OptimizeOptions(runs=5, workers=1))
    assert [c.resumed for c in second.candidates] == [True, False]
    assert second.candidates[1].build["status"] == first.candidates[1].build["status"] == "passed"


def test_no_candidate_fits_lists_every_reason(tiny_keras_path, data, tmp_path):
    from edgecv.converters.optimize import optimize

    calib, eval_data = data
    device = profile(tmp_path, FULL_INT8_TFLITE_ONLY)
    with pytest.raises(ValidationError, match=r"no candidate fits test-device: tflite-fp32: .*") as info:
        optimize(tiny_keras_path, device=device, calib=calib, eval_data=eval_data, out=tmp_path / "out")
    assert "\n" not in str(info.value)
    saved = json.loads((tmp_path / "out" / "optimize.json").read_text())
    assert saved["chosen"] is None and saved["candidates"][0]["verdict"] == "blocked"


@pytest.mark.parametrize("kwargs, error", [
    ({"device": "raspberry-pi-9"}, "unknown device 'raspberry-pi-9'; known devices: "),
    ({"calib": None}, "test-device runs int8: pass calibration images (--calib)"),
    ({"remote": "pi@host"}, "test-device is this machine (host: local); --remote is for other devices"),
    ({"model": "missing.keras"}, "model not found: missing.keras"),
])
def test_bad_input_is_one_line(tiny_keras_path, data, tmp_path, kwargs, error):
    from edgecv.converters.optimize import optimize

    calib, eval_data = data
    args = {"model": tiny_keras_path, "device": profile(tmp_path, LOCAL), "calib": calib, "eval_data": eval_data,
            "out": tmp_path / "out", **kwargs}
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        optimize(args.pop("model"), **args)
    assert not (tmp_path / "out").exists()


def test_coral_gets_a_full_integer_static_batch_tflite(tiny_keras_path, data, tmp_path):
    from edgecv.converters.optimize import optimize
    from edgecv.compat import read_graph

    calib, eval_data = data
    result = optimize(tiny_keras_path, device="coral-edgetpu", calib=calib, eval_data=eval_data, max_drop=5.0,
                      out=tmp_path / "coral")
    assert [c.name for c in result.candidates] == ["tflite-int8"]
    chosen = result.chosen
    assert chosen is not None and result.benchmarked_on is None and "preferred recipe" in chosen.why
    graph = read_graph(chosen.path)
    inputs = [graph.tensors[name] for name in graph.inputs]
    assert [tuple(t.shape) for t in inputs] == [(1, 16, 16, 3)] and [t.dtype for t in inputs] == ["uint8"]
    assert not any(t.dynamic for t in graph.tensors.values())
    assert chosen.compat["ok"] and chosen.compat["blockers"] == []


REMOTE = """\
name: {name}
description: "a device reached over SSH (here: a throwaway OpenSSH server on 127.0.0.1)"
arch: x86_64
runtimes:
  onnxruntime: {{providers: [CPUExecutionProvider]}}
formats: [onnx]
precisions:
  fp32: {{accelerated: true}}
  int8: {{accelerated: false}}
preferred: {{format: onnx, precision: int8}}
"""


def test_candidates_are_benchmarked_on_the_remote_device(tiny_keras_path, data, tmp_path):
    import sys

    from edgecv.converters.optimize import OptimizeOptions, optimize
    from tests.edgecv.sshd_helper import find_sshd, local_sshd

    if find_sshd() is None:
        pytest.skip("needs sshd (openssh-server)")
    calib, eval_data = data
    with local_sshd(tmp_path / "sshd") as server:
        options = OptimizeOptions(runs=10, python=sys.executable, port=server.port, identity=server.identity,
                                  ssh_options=tuple(server.options))
        result = optimize(tiny_keras_path, device=profile(tmp_path, REMOTE), calib=calib, eval_data=eval_data,
                          max_drop=5.0, out=tmp_path / "out", remote=server.target, options=options)
    assert result.benchmarked_on == server.target
    assert all(c.bench["device"]["remote"] == server.target for c in result.candidates)
    assert result.chosen.p50_ms == min(c.p50_ms for c in result.candidates)
