"""Seeded mutants of real artifacts (tests/edgecv/fuzz.py): with a manifest none runs, without one none
crashes the caller or escapes as anything but a one-line edgecv error.

More mutants and the full table: ``.venv/bin/python benchmarks/fuzz_artifacts.py``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tests.edgecv.fuzz import FAILURES, make_mutants, make_original, tally, try_mutants

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "models"
COUNT = int(os.environ.get("EDGECV_FUZZ_COUNT", "300"))  # mutants per format
SEED = 16


def _ir_from_onnx(onnx: Path, folder: Path) -> Path:
    ov = pytest.importorskip("openvino", reason="OpenVINO makes the IR original")
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / "mnist-8.xml"
    ov.save_model(ov.convert_model(str(onnx)), str(xml), compress_to_fp16=False)
    return xml


ORIGINALS = {
    # format: (how to get the real artifact, the runtime it needs)
    "tflite": (lambda tmp: SHARED / "face_detection_short_range.tflite", "ai_edge_litert"),
    "onnx": (lambda tmp: SHARED / "mnist-8.onnx", "onnxruntime"),
    "openvino": (lambda tmp: _ir_from_onnx(SHARED / "mnist-8.onnx", tmp / "ir"), "openvino"),
}


@pytest.fixture(scope="module", params=sorted(ORIGINALS))
def fuzzed(request, tmp_path_factory):
    fmt = request.param
    make, runtime = ORIGINALS[fmt]
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (the shared real models)")
    pytest.importorskip(runtime, reason=f"{runtime} runs {fmt} artifacts")
    tmp = tmp_path_factory.mktemp(f"fuzz-{fmt}")
    original = make_original(fmt, make(tmp), tmp / "original")
    mutants = make_mutants(original, tmp / "mutants", count=COUNT, seed=SEED)
    return fmt, mutants, try_mutants(mutants, work=tmp / "work")


def test_every_mutant_is_tried_both_ways(fuzzed):
    fmt, mutants, records = fuzzed
    assert len(records) == 2 * len(mutants) == 2 * COUNT
    kinds = Counter(m.kind for m in mutants)
    assert set(kinds) == {"flip", "run", "zero", "truncate"}, kinds


def test_with_a_manifest_no_mutant_runs(fuzzed):
    """The manifest's SHA-256 of every file refuses each one before a runtime reads it."""
    fmt, _, records = fuzzed
    with_manifest = [r for r in records if r["manifest"]]
    ran = [r for r in with_manifest if r["outcome"] != "refused"]
    assert ran == [], f"{fmt}: {len(ran)} of {len(with_manifest)} mutants with a manifest were not refused: {ran[:3]}"
    # An empty file is refused as empty before its manifest is read; everything else by its hashes.
    classes = Counter(r["error"] for r in with_manifest)
    assert set(classes) <= {"IntegrityError", "ModelFileError"}, classes
    assert classes["IntegrityError"] >= 0.9 * len(with_manifest), classes


def test_without_a_manifest_every_failure_is_a_one_line_edgecv_error(fuzzed):
    """No crash of the caller, no traceback: a mutant is refused in one line, or it runs (flipped weights
    cannot be told from trained ones without a manifest: the benchmark counts how many run wrong)."""
    fmt, _, records = fuzzed
    without = [r for r in records if not r["manifest"]]
    bad = [r for r in without if r["outcome"] in FAILURES]
    assert bad == [], f"{fmt}: {len(bad)} of {len(without)} mutants failed badly: {bad[:5]}"
    counts = tally(records)[(fmt, False)]
    assert counts["refused"] > 0 and counts["refused"] + counts["ran-same"] + counts["ran-wrong"] == len(without)
