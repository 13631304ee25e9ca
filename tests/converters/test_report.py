"""The export report: the table, why each float layer was kept and what it costs, Markdown, JSON and PNG."""

from __future__ import annotations

import json
from pathlib import Path

from edgecv.converters.export import ArtifactResult, ExportReport
from edgecv.converters.metrics import Scores
from edgecv.converters.report import format_markdown, format_text, rows, write_report

FALLBACK = {
    "ranking_method": "auto",
    "ranking": [],
    "kept": ["Convolution_797"],
    "why": [{"name": "Convolution_797", "op_type": "Convolution", "sqnr_db": 98.9, "clip_ratio": 2.65, "clip_db": 8.4}],
    "passed": True,
    "attempts": [{"float_layers": 0, "passed": False}, {"float_layers": 1, "passed": True}],
    "costs": [{"layer": "Convolution_797", "added_bytes": 6144, "added_p50_ms": 0.05},
              {"layer": "(all kept layers)", "added_bytes": 6144, "added_p50_ms": 0.05}],
    "seconds": 14.4,
}


def _report(tmp_path: Path) -> ExportReport:
    src = Scores(200, detection_f1=1.0, score_error=0.0, detections=200, sqnr_db=100.0, cosine=1.0)
    plain = ArtifactResult("onnx", "int8", path=tmp_path / "m.int8.onnx", status="failed", reason="detections lose 42.0 points",
                           size_bytes=206_000, scores=Scores(200, detection_f1=0.99, score_error=0.41, detections=198, sqnr_db=8.0,
                                                             cosine=0.95), drop=42.0, p50_ms=1.3)
    fixed = ArtifactResult("openvino", "int8", path=tmp_path / "m.int8.xml", status="passed", size_bytes=452_000,
                           scores=Scores(200, detection_f1=1.0, score_error=0.031, detections=200, sqnr_db=7.4, cosine=0.96),
                           drop=3.1, p50_ms=1.0, fallback=FALLBACK)
    return ExportReport("face.tflite", tmp_path, [plain, fixed], src, 229_714, "eval set: 200 samples of faces.npy",
                        {"source_detections": 200})


def test_text_names_each_float_layer_with_why_and_cost(tmp_path):
    text = format_text(_report(tmp_path))
    assert "detections of the float model on it: 200" in text
    assert "det F1 %" in text.splitlines()[3]
    line = next(x for x in text.splitlines() if x.strip().startswith("Convolution_797"))
    assert "eval activations reach 2.6x their calibrated range, clipping leaves 8.4 dB" in line
    assert "(costs +6.0 KB, +0.050 ms p50)" in line
    assert "layers ranked by auto, 2 builds tried, 14.4 s" in text
    assert "onnx int8: detections lose 42.0 points" in text


def test_rows_give_the_detection_metric_and_drop(tmp_path):
    table = rows(_report(tmp_path))
    assert table[0][5] == "100.00"  # the source's F1
    assert table[1][2] == "FAILED" and table[1][5] == "99.00" and table[1][6] == "+42.00"
    assert table[2][2] == "ok" and table[2][10] == "1"


def test_markdown_and_files(tmp_path):
    report = _report(tmp_path)
    md = format_markdown(report)
    assert "| `Convolution_797` | eval activations reach 2.6x" in md and "| 6144 | +0.0500 |" in md
    written = write_report(report, tmp_path)
    assert sorted(p.name for p in written) == ["report.json", "report.md", "report.png"]
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["artifacts"][1]["fallback"]["kept"] == ["Convolution_797"]
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_notes_name_the_shapes_checked_the_fixed_ones_and_how_p50_was_measured(tmp_path):
    from edgecv.converters.report import notes

    checked = [{"shape": [1, 3, 480, 640], "samples": 8}, {"shape": [1, 3, 512, 672], "samples": 2}]
    bench = {"runs": 100, "warmup": 10, "threads": None, "threads_used": 2, "batch": 1, "input_shape": [1, 3, 480, 640],
             "command": "edgecv bench det.fp32.onnx --runs 100 --warmup 10 --input-shape 1x3x480x640"}
    onnx = ArtifactResult("onnx", "fp32", path=tmp_path / "det.fp32.onnx", status="passed", p50_ms=41.5, bench=bench,
                          shapes={"input": [None, 3, None, None], "fixed": False, "note": "", "checked": checked})
    tfl = ArtifactResult("tflite", "fp32", path=tmp_path / "det.fp32.tflite", status="passed", p50_ms=40.0, bench=bench,
                         shapes={"input": [1, 480, 640, 3], "fixed": True, "checked": checked[:1],
                                 "note": "input fixed to 1x3x480x640: tflite takes static shapes (dims ?x3x?x? in the source)"})
    report = ExportReport("det.onnx", tmp_path, [onnx, tfl], None, 1000, "8 synthetic sample inputs",
                          {"shapes": {"source": [None, 3, None, None]}})
    assert notes(report) == [
        "input dims ?x3x?x? in the source; kept dynamic unless noted; checked at 1x3x480x640 (8 samples) and 1x3x512x672 "
        "(2 samples): onnx fp32; checked at 1x3x480x640 (8 samples): tflite fp32",
        "tflite fp32: input fixed to 1x3x480x640: tflite takes static shapes (dims ?x3x?x? in the source)",
        "p50 ms: measured as edgecv bench measures it (own process, 100 runs after 10 warm-up, 2 threads, batch 1); "
        "e.g. edgecv bench det.fp32.onnx --runs 100 --warmup 10 --input-shape 1x3x480x640",
    ]
    assert all(n in format_text(report) for n in notes(report))
    assert all(f"- {n}" in format_markdown(report) for n in notes(report))
