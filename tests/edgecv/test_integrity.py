"""Artifacts verify themselves (edgecv/integrity.py): ``edgecv.load`` hashes every file its manifest lists
before a runtime reads it and refuses a changed, missing or unlisted file, or an unreadable manifest, in one
line; ``verify=False`` / ``--no-verify`` loads anyway and says so. Also: an IR with a DOCTYPE or an empty
``<net>`` is refused, and runtime failures while running are one-line ``BackendError``s on every backend."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgecv
from edgecv.errors import BackendError, IntegrityError, ModelFileError
from edgecv.formats import FORMATS, read_graph
from edgecv.integrity import NO_HASHES, NO_MANIFEST, SKIPPED, VERIFIED, VERIFICATIONS
from edgecv.manifest import Manifest, digest_files, manifest_path
from tests.conftest import make_tiny_onnx, tiny_cnn_weights

ARTIFACT = {"tflite": "face.tflite", "onnx": "tiny.onnx", "openvino": "tiny.xml"}
HEX12 = "[0-9a-f]{12}"


def edgecv_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True, timeout=600)


def write_manifest(artifact: Path, **changes) -> Path:
    """The manifest an export writes: format, precision and the SHA-256 of every file of the artifact."""
    fmt = FORMATS[{".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino"}[artifact.suffix]]
    fields = {"format": fmt.name, "precision": "fp32", "artifact": artifact.name,
              "files": digest_files(fmt.files(artifact)), **changes}
    return Manifest(**fields).write(manifest_path(artifact))


@pytest.fixture(scope="module")
def originals(tmp_path_factory, shared_data) -> dict[str, Path]:
    """One artifact per format, without a manifest: a real TFLite (BlazeFace), the tiny ONNX CNN, and that CNN
    converted to an OpenVINO IR in-process."""
    ov = pytest.importorskip("openvino")
    folder = tmp_path_factory.mktemp("originals")
    shutil.copy(shared_data / "models" / "face_detection_short_range.tflite", folder / ARTIFACT["tflite"])
    onnx = make_tiny_onnx(folder / ARTIFACT["onnx"])
    ov.save_model(ov.convert_model(str(onnx)), str(folder / ARTIFACT["openvino"]), compress_to_fp16=False)
    return {fmt: folder / name for fmt, name in ARTIFACT.items()}


@pytest.fixture
def artifacts(originals, tmp_path) -> dict[str, Path]:
    """Fresh copies of the originals (and companions) with a manifest hashing their files."""
    out = {}
    for fmt, path in originals.items():
        for part in FORMATS[fmt].files(path):
            shutil.copy(part, tmp_path / part.name)
        out[fmt] = tmp_path / path.name
        write_manifest(out[fmt])
    return out


def inputs_for(model) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, [d or 2 for d in t.shape]).astype(t.dtype) for t in model.inputs]


def weight_offset(path: Path, *, seed: int = 0) -> int:
    """The offset in ``path`` of the most significant byte of its largest float weight (float16 in BlazeFace,
    float32 in the tiny CNN made with ``seed``): flipping it changes the weight a lot and leaves the file
    loadable."""
    data = path.read_bytes()
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        candidates = []
        for d in interpreter.get_tensor_details():
            try:
                value = interpreter.get_tensor(d["index"])
            except ValueError:
                continue
            if value.dtype in (np.float16, np.float32) and value.size >= 64 and np.abs(value).max() > 0:
                candidates.append(value)
        arrays = sorted(candidates, key=lambda a: -a.size)
    else:  # the tiny CNN's conv weights, in the .onnx or the IR's .bin
        arrays = [tiny_cnn_weights(seed)["w1"]]
    for a in arrays:
        at = data.find(a.tobytes())
        if at >= 0:
            return at + a.itemsize * (int(np.argmax(np.abs(a).ravel())) + 1) - 1
    raise AssertionError(f"no known weight found in {path}")


def flip(path: Path, offset: int, mask: int = 0x40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def assert_one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


# --- a changed file is refused; --no-verify runs it (and it gives other outputs: what the check prevents) ------


@pytest.mark.parametrize(
    "fmt, damaged, where, outputs_change",
    [
        ("tflite", ".tflite", "weight", True),
        ("onnx", ".onnx", "weight", True),
        ("openvino", ".bin", "weight", True),  # the companion: the .xml alone would still match
        ("openvino", ".xml", "net name", False),  # a renamed graph runs the same; the file still changed
    ],
)
def test_a_changed_file_is_refused_in_one_line_and_runs_only_with_no_verify(artifacts, fmt, damaged, where,
                                                                             outputs_change):
    path = artifacts[fmt]
    good = edgecv.load(path)
    assert good.verification == VERIFIED
    x = inputs_for(good)
    before = good.run(x)
    target = path.with_suffix(damaged)
    if where == "weight":
        flip(target, weight_offset(target))
    else:
        flip(target, target.read_bytes().index(b'<net name="') + len(b'<net name="'), mask=0x20)  # case of a letter

    with pytest.raises(IntegrityError) as info:
        edgecv.load(path)
    message = assert_one_line(info.value)
    assert re.fullmatch(rf"{re.escape(str(target))} does not match its manifest \(sha256 expected {HEX12}, got {HEX12}\): "
                        r"the file changed after export; re-export it, or load with verify=False / --no-verify to run it "
                        r"anyway", message), message

    model = edgecv.load(path, verify=False)
    assert model.verification == SKIPPED and model.manifest is not None
    after = model.run(x)
    changed = any(not np.allclose(a, b, rtol=1e-3, atol=1e-3) for a, b in zip(before, after))
    assert changed == outputs_change


# --- what the manifest says, and what load makes of it -------------------------------------------------------


def _drop_bin(xml: Path) -> None:
    xml.with_suffix(".bin").unlink()


def _list_only_xml(xml: Path) -> None:
    write_manifest(xml, files=digest_files([xml]))


def _list_extra(xml: Path) -> None:
    m = Manifest.read(manifest_path(xml))
    write_manifest(xml, files={**m.files, "calib.npy": "0" * 64})


def _raw_manifest(text: str):
    return lambda xml: manifest_path(xml).write_text(text)


def _files(value):
    def change(xml: Path) -> None:
        d = json.loads(manifest_path(xml).read_text())
        d["files"] = value(d["files"]) if callable(value) else value
        manifest_path(xml).write_text(json.dumps(d))
    return change


def _no_manifest(xml: Path) -> None:
    manifest_path(xml).unlink()


@pytest.mark.parametrize(
    "change, verified, error, no_verify",
    [
        # change to the IR's folder -> load's outcome (verification state or error), load(verify=False)'s outcome
        (lambda xml: None, VERIFIED, None, SKIPPED),
        (_no_manifest, NO_MANIFEST, None, SKIPPED),
        (_files({}), NO_HASHES, None, SKIPPED),
        (_drop_bin, None, r"tiny\.bin is missing: its manifest tiny\.xml\.json lists it \(sha256 " + HEX12 + r"\); "
         "re-export it", "the weights file tiny.bin is missing"),
        (_list_only_xml, None, r"tiny\.bin is not among the files its manifest tiny\.xml\.json hashes \(tiny\.xml\); "
         "re-export it", SKIPPED),
        (_list_extra, None, r"calib\.npy is missing: its manifest tiny\.xml\.json lists it", SKIPPED),
        (_files(lambda f: {**f, "../tiny.bin": "0" * 64}), None, r"lists '\.\./tiny\.bin', not a file name beside the "
         "artifact", SKIPPED),
        (_files(["tiny.xml"]), None, r"'files' must map file names to SHA-256 hashes, got list", SKIPPED),
        (_files(lambda f: {**f, "tiny.bin": "md5:abc"}), None, r"the hash of tiny\.bin is not a SHA-256", SKIPPED),
        (_raw_manifest("{not json"), None, r"tiny\.xml\.json is not valid JSON: .*; re-export it, or load with "
         r"verify=False / --no-verify to run it anyway \(without its manifest\)$", SKIPPED),
        (_raw_manifest('{"schema": "other/9", "format": "openvino", "precision": "fp32"}'), None,
         r"manifest schema: expected 'edgecv\.manifest/1', got 'other/9'; re-export it", SKIPPED),
    ],
    ids=["whole", "no manifest", "no hashes", ".bin deleted", ".bin unlisted", "listed file absent", "path in files",
         "files a list", "not a sha256", "not json", "other schema"],
)
def test_manifest_cases_on_an_ir(artifacts, change, verified, error, no_verify):
    xml = artifacts["openvino"]
    change(xml)
    if error is None:
        assert edgecv.load(xml).verification == verified
    else:
        with pytest.raises(IntegrityError) as info:
            edgecv.load(xml)
        assert re.search(error, assert_one_line(info.value)), str(info.value)
    if no_verify in VERIFICATIONS:
        model = edgecv.load(xml, verify=False)
        assert model.verification == no_verify and len(model.outputs) == 1
    else:
        with pytest.raises(ModelFileError, match=re.escape(no_verify)) as info:
            edgecv.load(xml, verify=False)
        assert not isinstance(info.value, IntegrityError)


def test_an_export_killed_between_its_files_is_refused(artifacts, originals, tmp_path):
    """What an in-place publication killed after the artifact and before its manifest leaves: a new .onnx
    beside the old manifest (another model's hashes)."""
    onnx = artifacts["onnx"]
    make_tiny_onnx(onnx, seed=1)  # the new artifact; the manifest still describes the seed-0 one
    with pytest.raises(IntegrityError, match=r"tiny\.onnx does not match its manifest"):
        edgecv.load(onnx)
    write_manifest(onnx)  # the manifest lands: the new set is whole
    assert edgecv.load(onnx).verification == VERIFIED


def test_the_tflite_crash_check_reuses_the_verified_hash(artifacts, monkeypatch):
    """Verifying hashes the .tflite once; the child-process crash check keys its cache on that hash instead
    of reading the file again."""
    import edgecv.probe

    calls = []
    real = edgecv.probe.check_in_child
    monkeypatch.setattr(edgecv.probe, "check_in_child", lambda path, **kw: calls.append(kw) or real(path, **kw))
    path = artifacts["tflite"]
    assert edgecv.load(path).verification == VERIFIED
    assert calls[0]["digest"] == Manifest.read(manifest_path(path)).files[path.name]


# --- the CLI ---------------------------------------------------------------------------------------------------


def test_info_shows_the_verification_and_refuses_a_changed_file(artifacts):
    onnx = artifacts["onnx"]
    good = edgecv_cli("info", onnx, "--json")
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["verification"] == VERIFIED
    text = edgecv_cli("info", onnx)
    assert "files: verified against the SHA-256 in its manifest" in text.stdout.splitlines()

    flip(onnx, weight_offset(onnx))
    refused = edgecv_cli("info", onnx)
    assert refused.returncode == 2 and refused.stdout == ""
    assert re.fullmatch(r"edgecv: error: .*tiny\.onnx does not match its manifest \(sha256 expected .*--no-verify to run it "
                        r"anyway\n", refused.stderr), refused.stderr
    skipped = edgecv_cli("info", onnx, "--no-verify", "--json")
    assert skipped.returncode == 0 and json.loads(skipped.stdout)["verification"] == SKIPPED
    assert "--no-verify" in skipped.stderr  # the warning that the check was skipped
    assert "files: skipped (--no-verify)" in edgecv_cli("info", onnx, "--no-verify").stdout.splitlines()
    manifest_path(onnx).unlink()
    assert "files: unverified (no manifest)" in edgecv_cli("info", onnx).stdout.splitlines()


def test_bench_shows_the_verification_and_refuses_a_changed_file(artifacts):
    xml, onnx = artifacts["openvino"], artifacts["onnx"]
    manifest_path(onnx).unlink()
    settings = ("--runs", "2", "--warmup", "0", "--threads", "1")
    results = edgecv_cli("bench", xml, onnx, *settings, "--json")
    assert results.returncode == 0, results.stderr
    assert [r["verification"] for r in json.loads(results.stdout)] == [VERIFIED, NO_MANIFEST]
    table = edgecv_cli("bench", xml, onnx, *settings).stdout.splitlines()
    assert table[-2:] == ["verified against their manifest's SHA-256: tiny.xml", "unverified (no manifest): tiny.onnx"]

    flip(xml.with_suffix(".bin"), weight_offset(xml.with_suffix(".bin")))
    refused = edgecv_cli("bench", xml, *settings, "--json")
    assert refused.returncode == 2 and refused.stdout == ""
    assert re.fullmatch(r"edgecv: error: .*tiny\.bin does not match its manifest .*--no-verify to run it anyway\n",
                        refused.stderr.splitlines(keepends=True)[-1]), refused.stderr
    skipped = edgecv_cli("bench", xml, *settings, "--json", "--no-verify")
    assert skipped.returncode == 0 and json.loads(skipped.stdout)[0]["verification"] == SKIPPED
    assert edgecv_cli("bench", xml, *settings, "--no-verify").stdout.splitlines()[-1] == "skipped (--no-verify): tiny.xml"


def test_detect_refuses_a_changed_model_unless_no_verify(artifacts, tmp_path):
    cv2 = pytest.importorskip("cv2")
    face = artifacts["tflite"]
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), np.full((96, 128, 3), 128, np.uint8))
    flip(face, weight_offset(face))
    args = ("detect", "--model", face, "--spec", "blazeface-short-range", "--source", images)
    refused = edgecv_cli(*args, "--out", tmp_path / "out1")
    assert refused.returncode == 2 and "face.tflite does not match its manifest" in refused.stderr
    assert not (tmp_path / "out1").exists()
    ran = edgecv_cli(*args, "--out", tmp_path / "out2", "--no-verify")
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "out2" / "predictions.json").is_file()


def test_a_folder_run_never_picks_a_changed_artifact_unless_no_verify(artifacts, tmp_path):
    """``edgecv track --model FOLDER`` measures every artifact to pick the fastest: a changed one is listed with
    its integrity error and never chosen; with verify=False it is measured like the others."""
    from edgecv.pipeline.select import fastest_artifact

    folder = tmp_path / "folder"
    folder.mkdir()
    for name, seed in (("a.onnx", 0), ("b.onnx", 1)):
        write_manifest(make_tiny_onnx(folder / name, seed=seed))
    flip(folder / "b.onnx", weight_offset(folder / "b.onnx", seed=1))
    best, table = fastest_artifact(folder, runs=2, threads=1, detectors_only=False)
    rows = {row["artifact"]: row for row in table}
    assert best.name == "a.onnx" and rows["a.onnx"]["error"] is None and rows["b.onnx"]["p50_ms"] is None
    assert re.search(r"b\.onnx does not match its manifest \(sha256 expected", rows["b.onnx"]["error"])
    _, table = fastest_artifact(folder, runs=2, threads=1, detectors_only=False, verify=False)
    assert all(row["error"] is None and row["p50_ms"] > 0 for row in table)


# --- OpenVINO IR: DOCTYPE and empty nets ------------------------------------------------------------------------

LAUGHS = ('<!DOCTYPE net [\n<!ENTITY a "aaaaaaaaaa">\n'
          + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n' for i in range(9)) + "]>\n")


@pytest.mark.parametrize(
    "prolog, error",
    [
        ('<?xml version="1.0"?>\n', None),
        ('\ufeff<?xml version="1.0"?>\n<!-- made by hand -->\n<?pi data?>\n', None),
        ('<?xml version="1.0"?>\n' + LAUGHS, "declares a DOCTYPE"),  # billion laughs: 10^10 a's
        ('<?xml version="1.0"?>\n<!-- ' + "x" * 200_000 + " -->\n" + LAUGHS, "declares a DOCTYPE"),
        ('<?xml version="1.0"?>\n<!DOCTYPE net SYSTEM "file:///etc/passwd">\n', "declares a DOCTYPE"),
        ('<?xml version="1.0"?>\n<model>\n', "its root element is not <net>"),
        ('<?xml version="1.0"?>\n<!-- never closed ', "does not end within 1 MB"),
    ],
    ids=["declaration", "bom comment pi", "billion laughs", "doctype after 200 KB", "external entity", "other root",
         "unclosed comment"],
)
def test_an_ir_prolog_with_a_doctype_is_refused_before_any_parser(originals, tmp_path, prolog, error):
    xml = tmp_path / "m.xml"
    body = originals["openvino"].read_text()
    body = body[body.index("<net "):]
    xml.write_text(prolog + (body if "<model>" not in prolog else body.replace("<net ", "<model ", 1)), encoding="utf-8")
    shutil.copy(originals["openvino"].with_suffix(".bin"), xml.with_suffix(".bin"))
    write_manifest(xml)  # its hashes match: the refusal is the format check's
    if error is None:
        assert len(edgecv.load(xml).outputs) == 1 and read_graph(xml).inputs
        return
    for action in (edgecv.load, read_graph, lambda p: edgecv.load(p, verify=False)):
        with pytest.raises(ModelFileError, match=re.escape(error)) as info:
            action(xml)
        assert_one_line(info.value)


EMPTY_NET = '<?xml version="1.0"?>\n<net name="e" version="11">\n<layers>\n</layers>\n<edges>\n</edges>\n</net>\n'


@pytest.mark.parametrize(
    "name, backend, error",
    [
        ("empty.xml", "openvino", "empty.xml has 0 input(s) and 0 output(s): there is nothing to run"),
        ("no_outputs.onnx", "onnxruntime", "no_outputs.onnx has 1 input(s) and 0 output(s): there is nothing to run"),
        ("no_outputs.onnx", "openvino", "no_outputs.onnx has 1 input(s) and 0 output(s): there is nothing to run"),
    ],
)
def test_a_model_with_no_inputs_or_outputs_is_refused(tmp_path, name, backend, error):
    pytest.importorskip(backend)
    path = tmp_path / name
    if path.suffix == ".xml":
        path.write_text(EMPTY_NET)
        path.with_suffix(".bin").write_bytes(b"")
    else:
        from onnx import TensorProto, helper, save

        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "no_outputs",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])], [])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        save(model, str(path))
    with pytest.raises(ModelFileError, match=re.escape(error)) as info:
        edgecv.load(path, backend=backend)
    assert_one_line(info.value)


# --- what a runtime raises while running is one BackendError line, and the model still runs after -----------


def _onnx(path: Path, nodes, inputs, shapes) -> Path:
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                                                 for n, s in zip(inputs, shapes)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def _broadcast_onnx(folder: Path) -> Path:
    """y = a + b with both lengths dynamic: lengths 3 and 4 pass every check before the runtime, then fail."""
    from onnx import helper

    return _onnx(folder / "add.onnx", [helper.make_node("Add", ["a", "b"], ["y"], name="add")], ["a", "b"], [["n"], ["m"]])


def _reshape_onnx(folder: Path) -> Path:
    """y = reshape(x, shape read from the input s): the target shape is data, known only when it runs."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["s"], ["si"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["x", "si"], ["y"], name="reshape")]
    return _onnx(folder / "reshape.onnx", nodes, ["x", "s"], [[6], [2]])


def _broadcast_ir(folder: Path) -> Path:
    import openvino as ov

    ov.save_model(ov.convert_model(str(_broadcast_onnx(folder))), str(folder / "add.xml"))
    return folder / "add.xml"


def _broadcast_tflite(folder: Path) -> Path:
    """The same dynamic-length ADD as a hand-built TFLite flatbuffer (no TensorFlow)."""
    s = pytest.importorskip("ai_edge_litert.schema_py_generated")
    from tests.edgecv.sparse_helper import build_model, to_bytes

    tensors = [dict(name=n, shape=[1], shapeSignature=[-1], buffer=i + 1) for i, n in enumerate(("a", "b", "y"))]
    ops = [(s.BuiltinOperator.ADD, [0, 1], [2], s.BuiltinOptions.AddOptions, s.AddOptionsT())]
    path = folder / "add.tflite"
    path.write_bytes(to_bytes(build_model(tensors, ops, [0, 1], [2], {})))
    return path


BROADCAST = ([np.ones(3, np.float32), np.ones(4, np.float32)], [np.ones(2, np.float32), np.ones(2, np.float32)])
RESHAPE = ([np.zeros(6, np.float32), np.array([4, 4], np.float32)], [np.arange(6, dtype=np.float32), np.array([2, 3], np.float32)])


@pytest.mark.parametrize(
    "make, backend, feeds, message",
    [
        (_broadcast_onnx, "onnxruntime", BROADCAST, r"onnxruntime failed to run add\.onnx: Add node 'add': .*Attempting to "
         r"broadcast an axis by a dimension other than 1\. 3 by 4$"),
        (_broadcast_onnx, "openvino", BROADCAST, r"openvino failed to run add\.onnx: \[CPU\] Add node with name 'y' .*failed: "
         r"Eltwise shape infer input shapes dim index: 0 mismatch$"),
        (_broadcast_ir, "openvino", BROADCAST, r"openvino failed to run add\.xml: \[CPU\] Add node .*mismatch$"),
        (_broadcast_tflite, "litert", BROADCAST, r"litert failed to run add\.tflite: op \d+ \(\w+\) failed to prepare: "
         r"(Given shapes, \[3\] and \[4\], are not broadcastable|XNNPack delegate failed to reshape runtime)$"),
        (_reshape_onnx, "onnxruntime", RESHAPE, r"onnxruntime failed to run reshape\.onnx: Reshape node 'reshape': .*The "
         r"input tensor cannot be reshaped to the requested shape\. Input shape:\{6\}, requested shape:\{4,4\}$"),
        (_reshape_onnx, "openvino", RESHAPE, r"openvino failed to run reshape\.onnx: \[CPU\] Reshape node .*the shape of "
         r"input data \(6\) conflicts with the reshape pattern \(4\.4\)$"),
    ],
    ids=["add onnx ort", "add onnx openvino", "add ir openvino", "add tflite litert", "reshape onnx ort",
         "reshape onnx openvino"],
)
def test_a_runtime_failure_while_running_is_one_backend_error(tmp_path, make, backend, feeds, message):
    pytest.importorskip({"litert": "ai_edge_litert", "onnxruntime": "onnxruntime", "openvino": "openvino"}[backend])
    model = edgecv.load(make(tmp_path), backend=backend)
    bad, good = feeds
    with pytest.raises(BackendError) as info:
        model.run(bad)
    assert re.fullmatch(message, assert_one_line(info.value)), str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    out = model.run(good)[0]  # the session is still usable
    expected = good[0] + good[1] if "add" in model.path.name else good[0].reshape(2, 3)
    np.testing.assert_allclose(out, expected, rtol=0, atol=0)
