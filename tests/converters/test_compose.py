"""docs/compose.md's Python example, run as written: distill, prune channels, cluster, QAT, export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parents[2] / "docs" / "compose.md"


def _python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, f"expected one python block in {DOC.name}, got {len(blocks)}"
    return blocks[0]


def test_the_documented_chain_runs_and_every_step_shrinks_the_model(tiny_keras_path, tmp_path, monkeypatch, capsys):
    from edgecv.manifest import manifest_path
    from edgecv.synthetic import shape_images

    monkeypatch.chdir(tmp_path)
    (tmp_path / "teacher.keras").write_bytes(tiny_keras_path.read_bytes())
    before = (tmp_path / "teacher.keras").read_bytes()
    for name, count, seed in (("train.npz", 240, 3), ("eval.npz", 40, 4)):
        x, y = shape_images(count, size=16, seed=seed)
        np.savez(tmp_path / name, x=x, y=y)

    scope: dict = {}
    exec(compile(_python_block(), str(DOC), "exec"), scope)

    student, pruned, shared, tuned, artifacts = (scope[k] for k in ("student", "pruned", "shared", "tuned", "artifacts"))
    assert (tmp_path / "teacher.keras").read_bytes() == before
    assert student.params_student < 0.5 * student.params_teacher
    assert pruned.params_after < pruned.params_before == student.params_student
    assert pruned.flops_after < pruned.flops_before
    assert shared.unique_values and max(shared.unique_values.values()) <= 16
    for name, values in shared.unique_values.items():  # the clustered model QAT started from shares its weights
        assert np.unique(shared.model.get_layer(name).get_weights()[0]).size == values <= 16
    assert set(artifacts.paths) == {"tflite", "onnx", "openvino"}
    assert len(scope["data"].x_val) == 40  # scored on eval.npz, not on a split of train.npz
    for fmt, path in artifacts.paths.items():
        assert path.resolve().parent == tmp_path / "edge" and path.name.startswith("digits.qat-int8")
        manifest = json.loads(manifest_path(path).read_text())
        assert manifest["quantization"]["method"] == "qat" and manifest["validation"]["samples"] == 40, fmt
        assert 0.0 <= artifacts.top1[fmt] <= 1.0
        # the exported int8 model agrees with the fake-quantized Keras model's top-1 to within 2 of 40 images
        assert abs(artifacts.top1[fmt] - tuned.top1_qat) <= 2 / 40 + 1e-9, fmt
    printed = capsys.readouterr().out
    assert "pruned" in printed and "openvino" in printed
