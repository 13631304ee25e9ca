"""The cheap part of the conformance matrix (benchmarks/conformance.py) on the real third-party corpus.

Every corpus model goes through ``edgecv info``, ``bench``, ``devices check`` and, where a built-in spec
applies, ``detect``, as the user runs them (the CLI in a subprocess). Each cell must be ok, or the one-line
refusal recorded in tests/conformance_expected.json; cells that fail today for a known, open reason are
strict xfails there, so they flip to errors when fixed. The export columns are too slow for CI: run
``benchmarks/conformance.py`` for the full matrix.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import conformance  # noqa: E402
from corpus import CORPUS, MODEL_PACKAGES, Entry, missing, model_path  # noqa: E402

EXPECTED = json.loads((Path(__file__).with_name("conformance_expected.json")).read_text())


def _cells() -> list:
    params = []
    for entry in CORPUS:
        for step in conformance.QUICK_STEPS:
            if step == "detect" and entry.kind != "detector":
                continue
            key = f"{entry.name}/{step}"
            marks = []
            if key in EXPECTED["xfail"]:
                marks.append(pytest.mark.xfail(strict=True, reason=EXPECTED["xfail"][key]))
            params.append(pytest.param(entry, step, id=key, marks=marks))
    return params


@pytest.fixture(scope="module")
def context(corpus: Path, shared_data: Path, tmp_path_factory) -> conformance.Context:
    out = tmp_path_factory.mktemp("conformance")
    return conformance.Context(corpus, out, conformance.data_sources(out / "data"), conformance.builtin_specs(), runs=3)


@pytest.mark.parametrize("entry, step", _cells())
def test_cheap_step(entry: Entry, step: str, context: conformance.Context) -> None:
    why = missing(entry, context.corpus)
    assert why is None, why  # the corpus install (and the shared data) must hold every model of the table
    (cell,) = conformance.STEP_FUNCS[step](entry, model_path(entry, context.corpus), context)
    key = f"{entry.name}/{step}"
    if cell.status == conformance.NA:
        pytest.skip(f"{key}: {cell.reason}")
    if key in EXPECTED["refused"]:
        assert cell.status == conformance.REFUSED, f"{key}: expected a refusal, got {cell.status} {cell.reason}"
        assert EXPECTED["refused"][key] in cell.reason
    else:
        assert cell.status == conformance.OK, f"{key}: {cell.status}: {cell.reason}"


def test_expected_table_names_real_cells() -> None:
    """A stale entry (a renamed model or step) would silently stop checking anything."""
    names = {e.name for e in CORPUS}
    for key in [*EXPECTED["refused"], *EXPECTED["xfail"]]:
        model, _, step = key.partition("/")
        assert model in names and (step in conformance.STEPS or step.startswith("export:")), key


def test_corpus_covers_the_issue() -> None:
    """At least 15 real models, with every kind, format and encoding the issue asks for."""
    real = [e for e in CORPUS if not e.origin.startswith("project:")]
    assert len(real) >= 15
    assert {"classifier", "detector", "landmark", "segmenter", "text-detector"} <= {e.kind for e in CORPUS}
    assert {"fp32", "fp16", "int8"} <= {e.precision for e in CORPUS}
    assert any(e.sparse for e in CORPUS) and any(e.dynamic for e in CORPUS)
    for e in CORPUS:
        if e.package is not None:
            assert e.origin == f"{e.package}=={MODEL_PACKAGES[e.package]}", e.name
        assert not e.dynamic or e.input_shape, f"{e.name}: a dynamic model needs the shape to fix it to"


def _tflite_facts(path: Path) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    types = {t["dtype"] for t in interp.get_tensor_details()}
    inputs = interp.get_input_details()
    return {
        "fp16": np.float16 in types,
        "int8": bool(types & {np.int8, np.uint8}),
        "int_io": inputs[0]["dtype"] in (np.int8, np.uint8),
        "sparse": any(op["op_name"] == "DENSIFY" for op in interp._get_ops_details()),
        "dynamic": any(-1 in d["shape_signature"] for d in inputs),
    }


def _onnx_facts(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in init]
    ops = {n.op_type for n in m.graph.node}
    return {
        "fp16": any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer),
        "int8": bool(ops & {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}),
        "int_io": False,
        "sparse": False,
        "dynamic": any(not d.HasField("dim_value") for i in inputs for d in i.type.tensor_type.shape.dim),
    }


@pytest.mark.parametrize("entry", [e for e in CORPUS if e.fmt in ("tflite", "onnx")], ids=lambda e: e.name)
def test_corpus_table_describes_the_file(entry: Entry, corpus: Path, shared_data: Path) -> None:
    """Precision, sparsity and dynamic dims in the table are read off the model file itself."""
    path = model_path(entry, corpus)
    assert path.is_file(), missing(entry, corpus)
    facts = _tflite_facts(path) if entry.fmt == "tflite" else _onnx_facts(path)
    precision = {
        (False, False, False): "fp32",
        (True, False, False): "fp16",
        (False, True, True): "int8",
        (False, True, False): "int8-weights",
    }.get((facts["fp16"], facts["int8"], facts["int_io"]), "mixed")
    assert (precision, facts["sparse"], facts["dynamic"]) == (entry.precision, entry.sparse, entry.dynamic)


# --- how a cell is judged, on hand-made process results ---------------------------------------------------


def _run(code, stderr: str, stdout: str = "") -> conformance.Run:
    lines = stderr.splitlines()
    kept = [ln for ln in lines if not any(p.search(ln) for p in conformance.NOISE)]
    return conformance.Run(code, stdout, kept, len(lines) - len(kept), 0.1, ["edgecv"])


@pytest.mark.parametrize(
    "code, stderr, expected",
    [
        (0, "", None),
        (0, "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n", None),
        (1, "edgecv: error: model.onnx: dims are dynamic; give --input-shape\n", ("refused", "give --input-shape")),
        (1, "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nedgecv: error: bad file\n", ("refused", "bad file")),
        (1, "warning: something\nedgecv: error: bad file\n", ("FAILED", "2 lines on stderr")),
        (1, "", ("FAILED", "nothing on stderr")),
        (1, "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n", ("FAILED", "ValueError: boom")),
        (0, "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'a'\n", ("FAILED", "KeyError")),
        (2, "usage: edgecv bench [-h]\nedgecv bench: error: unrecognized arguments: --input-shape 1,3\n",
         ("FAILED", "unrecognized arguments")),
        (-9, "", ("FAILED", "signal 9")),
        (None, "", ("FAILED", "timeout")),
    ],
)
def test_judge(code, stderr: str, expected) -> None:
    verdict = conformance.judge(_run(code, stderr), timeout=5)
    if expected is None:
        assert verdict is None
    else:
        assert verdict[0] == expected[0] and expected[1] in verdict[1], verdict


def _row(fmt: str, precision: str, status: str, path: str | None, reason: str = "") -> dict:
    return {"format": fmt, "precision": precision, "status": status, "path": path, "reason": reason,
            "size_bytes": 10, "p50_ms": 1.0, "scores": None, "fallback": None}


def test_export_cells(tmp_path: Path) -> None:
    """Each artifact row of an export report is judged on disk and against the exit code."""
    written = tmp_path / "m.fp32.onnx"
    written.write_bytes(b"x")
    broken = tmp_path / "m.fp16.onnx"
    broken.write_bytes(b"x")
    gated = tmp_path / "_failed" / "m.int8.xml"
    gated.parent.mkdir()
    gated.write_bytes(b"x")
    report = {"ok": False, "artifacts": [
        _row("tflite", "fp32", "failed", None, "a .tflite source is already TFLite"),
        _row("tflite", "fp16", "passed", None, "benchmark needs a fixed shape"),
        _row("tflite", "int8", "passed", str(tmp_path / "gone.int8.tflite")),
        _row("onnx", "fp32", "passed", str(written)),
        _row("onnx", "fp16", "passed", str(broken)),
        _row("onnx", "int8", "failed", None, "Traceback (most recent call last):\n  ..."),
        _row("openvino", "fp32", "failed", None, ""),
        _row("openvino", "int8", "failed", str(gated), "output SQNR 16.1 dB is below 20 dB"),
        _row("openvino", "fp16", "failed", None, "cannot load m.fp16.xml with OpenVINO: bad IR"),
    ]}
    loads = lambda path, fmt, precision: "does not load" if path == broken else None  # noqa: E731
    cells = {c.step: c for c in conformance.export_cells("m", report, _run(1, "edgecv: error: 2 failed"), loads)}
    got = {step: (c.status, c.reason) for step, c in cells.items()}
    assert got["export:tflite:fp32"] == ("refused", "a .tflite source is already TFLite")
    assert got["export:tflite:fp16"][0] == "FAILED" and "path null" in got["export:tflite:fp16"][1]
    assert got["export:tflite:int8"][0] == "FAILED" and "not on disk" in got["export:tflite:int8"][1]
    assert got["export:onnx:fp32"][0] == "ok"
    assert got["export:onnx:fp16"] == ("FAILED", "does not load")
    assert got["export:onnx:int8"][0] == "FAILED" and "one-line" in got["export:onnx:int8"][1]
    assert got["export:openvino:fp32"][0] == "FAILED"
    assert got["export:openvino:fp16"][0] == "FAILED" and "edgecv wrote is broken" in got["export:openvino:fp16"][1]
    assert got["export:openvino:int8"] == ("refused", "gate: output SQNR 16.1 dB is below 20 dB")
    gone = {"ok": False, "artifacts": [_row("onnx", "int8", "failed", str(tmp_path / "_failed" / "x.onnx"), "low")]}
    (cell,) = [c for c in conformance.export_cells("m", gone, _run(1, "e"), loads) if c.step == "export:onnx:int8"]
    assert cell.status == "FAILED" and "not on disk" in cell.reason
    del report["artifacts"][-1]
    missing_row = conformance.export_cells("m", report, _run(1, "edgecv: error: 2 failed"), loads)
    assert next(c for c in missing_row if c.step == "export:openvino:fp16").reason == "no row in report.json"
    # exit 0 with a failed row is a lie about success
    exit0 = conformance.export_cells("m", report, _run(0, ""), loads)
    assert next(c for c in exit0 if c.step == "export:tflite:fp32").status == "FAILED"
