"""Bad model files: one clear error each, never a traceback or a crash."""

import ast
import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgecv
from edgecv.backends import BACKENDS
from edgecv.devices import Runtime
from edgecv.errors import ModelFileError, UnsupportedFormatError
from edgecv.formats import FORMATS, PRECISIONS, ArtifactFormat, format_for_path, read_graph
from edgecv.graph import Graph, WeightOps

EDGECV = Path(edgecv.__file__).parent


def test_format_table_drives_suffixes_and_backends():
    assert {f.suffix: f.name for f in FORMATS.values()} == {".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino"}
    assert format_for_path("a/B.TFLITE").name == "tflite"


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_format_is_one_module(name):
    """Everything about a format is in edgecv/formats/<name>.py: its class sets every attribute and
    implements the check and the graph reader there."""
    fmt = FORMATS[name]
    cls = type(fmt)
    module = importlib.import_module(f"edgecv.formats.{name}")
    assert cls.__module__ == module.__name__ and isinstance(fmt, ArtifactFormat) and fmt.name == name
    for attr in ("name", "suffix", "backends", "precisions", "target", "weight_ops"):
        assert attr in vars(cls), f"{cls.__name__} does not set {attr}"
    for method in ("check", "read_graph"):
        assert getattr(cls, method).__module__ == module.__name__ and not inspect.isabstract(cls)
    assert fmt.suffix.startswith(".") and fmt.precisions[0] == "fp32" and isinstance(fmt.weight_ops, WeightOps)
    assert fmt.backends and all(b in BACKENDS for b in fmt.backends)
    assert fmt.target == f"edgecv.converters.targets.{name}"


def test_precisions_backends_and_suffixes_have_one_source():
    import edgecv.devices

    assert PRECISIONS == ("fp32", "fp16", "dynamic", "int8", "int16x8", "int4") and edgecv.devices.PRECISIONS is PRECISIONS
    for backend in BACKENDS.values():
        assert backend.formats == tuple(f.name for f in FORMATS.values() if backend.name in f.backends)
    assert BACKENDS["openvino"].formats == ("onnx", "openvino") and BACKENDS["litert"].formats == ("tflite",)
    with pytest.raises(UnsupportedFormatError) as info:
        format_for_path("model.rknn")
    assert all(f"{f.suffix} ({f.name})" in str(info.value) for f in FORMATS.values())


def test_a_format_must_set_its_attributes_and_methods():
    class Half(ArtifactFormat):  # no read_graph: abstract
        name, suffix, backends, precisions, target, weight_ops = "half", ".h", ("litert",), ("fp32",), "", WeightOps()

        def check(self, path: Path) -> None:
            pass

    with pytest.raises(TypeError, match="abstract"):
        Half()
    with pytest.raises(TypeError, match="format Bare does not set suffix, backends, precisions, target, weight_ops"):
        class Bare(ArtifactFormat):
            name = "bare"

            def check(self, path: Path) -> None:
                pass

            def read_graph(self, path: Path) -> Graph:
                raise NotImplementedError


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_read_graph_reads_a_real_artifact_of_each_format(exported, name):
    """The graph of each exported artifact of the format: ops, ends, and the precision its manifest names."""
    artifacts = [a for a in exported.artifacts if a.format == name]
    assert "fp32" in {a.precision for a in artifacts}
    for artifact in artifacts:
        precision = artifact.precision
        graph = read_graph(artifact.path)
        assert graph.format == name and graph.weight_ops is FORMATS[name].weight_ops
        assert graph.ops and graph.inputs and graph.outputs and set(graph.inputs + graph.outputs) <= set(graph.tensors)
        assert graph.param_bytes > 0 and graph.precision == precision
        assert [p.name for p in FORMATS[name].files(artifact.path)] == [
            artifact.path.name, *([artifact.path.with_suffix(FORMATS[name].companion).name] if FORMATS[name].companion else [])]


@pytest.mark.parametrize(
    "backend, settings, cpu",
    [
        ("litert", Runtime(delegates=("edgetpu",)), True),  # its built-in kernels run what a delegate leaves
        ("onnxruntime", Runtime(), True),
        ("onnxruntime", Runtime(providers=("CUDAExecutionProvider", "CPUExecutionProvider")), True),
        ("onnxruntime", Runtime(providers=("TensorrtExecutionProvider",)), False),
        ("openvino", Runtime(), True),
        ("openvino", Runtime(devices=("GPU", "CPU")), True),
        ("openvino", Runtime(devices=("NPU",)), False),
    ],
)
def test_backend_says_whether_a_profile_keeps_a_cpu_path(backend, settings, cpu):
    assert BACKENDS[backend].runs_on_cpu(settings) is cpu


def _project_imports(path: Path) -> set[str]:
    """The edgecv modules ``path`` imports anywhere (functions and TYPE_CHECKING blocks included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgecv"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("edgecv")}
    return found


def test_format_graph_and_compat_modules_import_without_cycles():
    """Following every import (lazy ones too) from these modules never leads back to where it started."""
    modules = {".".join(("edgecv", *p.relative_to(EDGECV).with_suffix("").parts)).removesuffix(".__init__"): p
               for p in EDGECV.rglob("*.py") if "converters" not in p.parts and "profiles" not in p.parts}
    edges = {m: {i for i in _project_imports(p) if i in modules and i != m} for m, p in modules.items()}
    for start in ("edgecv.graph", "edgecv.formats", "edgecv.formats.base", "edgecv.formats.tflite",
                  "edgecv.formats.onnx", "edgecv.formats.openvino", "edgecv.compat", "edgecv.devices",
                  "edgecv.backends", "edgecv.backends.base", "edgecv.backends.litert", "edgecv.flatbuffer"):
        seen, todo = set(), list(edges[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += edges[m]
        # a package __init__ re-exporting its submodules is fine; a submodule importing its package back is not
        back = {m for m in seen if m == start or (start.startswith(m + ".") and m != "edgecv")}
        assert not back, f"{start} imports itself back through {sorted(back)}"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.fixture()
def tflite_bytes(exported) -> bytes:
    return next(a.path for a in exported.artifacts if a.format == "tflite" and a.precision == "fp32").read_bytes()


@pytest.mark.parametrize(
    "name, make, error, message",
    [
        ("absent.onnx", None, ModelFileError, "model file not found"),
        ("empty.onnx", lambda b: b"", ModelFileError, "model file is empty"),
        ("empty.tflite", lambda b: b"", ModelFileError, "model file is empty"),
        ("model.pt", lambda b: b"x", UnsupportedFormatError, "unknown model extension '.pt'; edgecv reads .tflite"),
        ("noext", lambda b: b"x", UnsupportedFormatError, r"unknown model extension '\(none\)'"),
        ("garbage.tflite", lambda b: b"\x00" * 64, ModelFileError, "no 'TFL3' identifier"),
        ("trunc10.tflite", lambda b: b[: len(b) // 10], ModelFileError, "truncated|corrupted"),
        ("trunc50.tflite", lambda b: b[: len(b) // 2], ModelFileError, "truncated|corrupted"),
        ("trunc90.tflite", lambda b: b[: len(b) * 9 // 10], ModelFileError, "truncated|corrupted"),
        ("short.tflite", lambda b: b[:6], ModelFileError, "no 'TFL3' identifier"),
        ("text.onnx", lambda b: b"hello world", ModelFileError, "not an ONNX protobuf"),
        ("trunc.onnx", None, ModelFileError, "cannot load .* with ONNX Runtime"),
        ("text.xml", lambda b: b"hello", ModelFileError, "not an OpenVINO IR"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, tiny_onnx, tflite_bytes, name, make, error, message):
    if name == "trunc.onnx":
        data = tiny_onnx.read_bytes()
        path = _write(tmp_path, name, data[: len(data) // 2])
    elif make is None:
        path = tmp_path / name
    else:
        path = _write(tmp_path, name, make(tflite_bytes))
    with pytest.raises(error, match=message) as info:
        edgecv.load(path)
    assert "\n" not in str(info.value)


def test_openvino_ir_without_its_weights(exported, tmp_path):
    xml = next(a.path for a in exported.artifacts if a.format == "openvino")
    lone = tmp_path / "lone.xml"
    lone.write_bytes(xml.read_bytes())
    with pytest.raises(ModelFileError, match="weights file lone.bin is missing"):
        edgecv.load(lone)


def test_openvino_ir_with_truncated_weights(exported, tmp_path):
    xml = next(a.path for a in exported.artifacts if a.format == "openvino" and a.precision == "fp32")
    (tmp_path / "m.xml").write_bytes(xml.read_bytes())
    (tmp_path / "m.bin").write_bytes(xml.with_suffix(".bin").read_bytes()[:100])
    with pytest.raises(ModelFileError, match="cannot load .* with OpenVINO"):
        edgecv.load(tmp_path / "m.xml")


FUZZ_CHILD = r"""
import json, sys
import numpy as np
import edgecv
from edgecv.errors import EdgeCVError
outcomes = []
for path in json.loads(sys.argv[1]):
    try:
        m = edgecv.load(path)
        m.run([np.zeros([d or 1 for d in t.shape], t.dtype) for t in m.inputs])
        outcomes.append("ok")
    except EdgeCVError as exc:
        outcomes.append("error")
print(json.dumps(outcomes))
"""


@pytest.mark.parametrize("source", [pytest.param("exported", marks=pytest.mark.workstation), "blazeface", "ssd"])
def test_corrupted_tflite_files_never_crash_the_process(request, tmp_path, source):
    """Flip a few random bytes in many copies; every load must succeed or raise EdgeCVError in-process."""
    if source == "exported":
        data = next(a.path for a in request.getfixturevalue("exported").artifacts if a.format == "tflite").read_bytes()
    else:
        shared = request.getfixturevalue("shared_data")
        rel = "face_detection_short_range.tflite" if source == "blazeface" else "ssd_mobilenet_v1_coco_quant/detect.tflite"
        data = (shared / "models" / rel).read_bytes()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(60):
        buf = bytearray(data)
        # Half the flips hit the first kilobyte, where the tables and offsets live.
        limit = min(len(buf), 1024) if i % 2 else len(buf)
        for pos in rng.integers(0, limit, size=rng.integers(1, 6)):
            buf[pos] = rng.integers(0, 256)
        paths.append(str(_write(tmp_path, f"c{i}.tflite", bytes(buf))))
    proc = subprocess.run([sys.executable, "-c", FUZZ_CHILD, json.dumps(paths)], capture_output=True, text=True)
    assert proc.returncode == 0, f"loader died with {proc.returncode}: {proc.stderr[-500:]}"
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(outcomes) == 60 and set(outcomes) <= {"ok", "error"}
