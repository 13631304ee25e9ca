"""fastest_artifact: measures every artifact of a folder in-process and picks the one with the lowest median;
detector artifacts are those whose manifest carries a detector spec; broken ones are listed, never chosen;
folders with nothing to choose are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecv.errors import ConfigError, InputError
from edgecv.manifest import Manifest, manifest_path
from edgecv.pipeline.select import fastest_artifact, folder_artifacts
from tests.conftest import make_tiny_onnx
from tests.edgecv.detection.test_detector import make_fake_detector, write_fake_spec

pytest.importorskip("onnxruntime")

RUNS = 3
ROW_KEYS = {"artifact", "path", "backend", "p50_ms", "error"}


def add_detector_manifest(model: Path, tmp_path: Path) -> None:
    from edgecv.detection import load_spec

    spec = load_spec(write_fake_spec(tmp_path / f"{model.stem}.yaml"))
    Manifest(format="onnx", precision="fp32", extra={"detector": spec.to_dict()}).write(manifest_path(model))


@pytest.fixture
def two_models(tmp_path):
    folder = tmp_path / "artifacts"
    folder.mkdir()
    make_tiny_onnx(folder / "a.onnx", seed=0)
    make_tiny_onnx(folder / "b.onnx", batch=1, seed=1)
    (folder / "notes.txt").write_text("not a model\n")
    (folder / "sub.onnx").mkdir()  # a folder named like a model is no artifact
    return folder


def test_all_artifacts_measured_and_the_fastest_chosen(two_models):
    best, table = fastest_artifact(two_models, runs=RUNS, threads=1, detectors_only=False)
    assert sorted(row["artifact"] for row in table) == ["a.onnx", "b.onnx"]
    assert all(set(row) == ROW_KEYS for row in table)
    assert all(row["error"] is None and row["backend"] == "onnxruntime" and row["p50_ms"] > 0 for row in table)
    p50 = [row["p50_ms"] for row in table]
    assert p50 == sorted(p50)  # fastest first
    assert best == Path(table[0]["path"]) == two_models / table[0]["artifact"]


def test_a_broken_artifact_is_listed_and_never_chosen(two_models):
    (two_models / "broken.onnx").write_bytes(b"not an onnx model at all")
    (two_models / "empty.onnx").write_bytes(b"")
    best, table = fastest_artifact(two_models, runs=RUNS, threads=1, detectors_only=False)
    assert [row["artifact"] for row in table[:2]] in (["a.onnx", "b.onnx"], ["b.onnx", "a.onnx"])
    failed = {row["artifact"]: row for row in table[2:]}
    assert sorted(failed) == ["broken.onnx", "empty.onnx"]
    assert all(r["p50_ms"] is None and r["backend"] is None and r["error"] and "\n" not in r["error"]
               for r in failed.values())
    assert best.name in ("a.onnx", "b.onnx")


def test_nothing_runnable_is_a_config_error(tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"garbage")
    with pytest.raises(ConfigError) as exc:
        fastest_artifact(tmp_path, runs=RUNS, detectors_only=False)
    msg = str(exc.value)
    assert msg.startswith(f"no artifact in {tmp_path} could be run: broken.onnx: ") and "\n" not in msg


def test_detectors_only_keeps_artifacts_with_a_detector_spec(two_models, tmp_path):
    detector = make_fake_detector(two_models / "det.onnx")
    add_detector_manifest(detector, tmp_path)
    # a manifest without a detector spec does not make an artifact a detector
    Manifest(format="onnx", precision="fp32").write(manifest_path(two_models / "a.onnx"))
    assert folder_artifacts(two_models) == [detector]
    assert folder_artifacts(two_models, detectors_only=False) == [two_models / n for n in ("a.onnx", "b.onnx", "det.onnx")]
    best, table = fastest_artifact(two_models, runs=RUNS, threads=1)
    assert best == detector and [row["artifact"] for row in table] == ["det.onnx"]


@pytest.mark.parametrize("case, detectors_only, error", [
    ("empty", False, "no artifacts (.tflite, .onnx, .xml) in {folder}; export with 'edgecv export --spec', or "
                     "pass --spec"),
    ("empty", True, "no detector artifacts (with a detector spec in their manifest) (.tflite, .onnx, .xml) in {folder}; "
                    "export with 'edgecv export --spec', or pass --spec"),
    ("no manifests", True, "no detector artifacts (with a detector spec in their manifest) (.tflite, .onnx, .xml) in "
                           "{folder}; export with 'edgecv export --spec', or pass --spec"),
    ("other files", False, "no artifacts (.tflite, .onnx, .xml) in {folder}; export with 'edgecv export --spec', or "
                           "pass --spec"),
])
def test_nothing_to_choose_is_a_one_line_config_error(tmp_path, case, detectors_only, error):
    folder = tmp_path / "models"
    folder.mkdir()
    if case == "no manifests":
        make_tiny_onnx(folder / "a.onnx")
    if case == "other files":
        (folder / "model.pt").write_bytes(b"x")
        (folder / "a.onnx.json").write_text("{}")
    with pytest.raises(ConfigError) as exc:
        fastest_artifact(folder, runs=RUNS, detectors_only=detectors_only)
    assert str(exc.value) == error.format(folder=folder)


def test_a_missing_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError) as exc:
        fastest_artifact(tmp_path / "nowhere", runs=RUNS)
    assert str(exc.value) == f"model folder not found: {tmp_path / 'nowhere'}"
