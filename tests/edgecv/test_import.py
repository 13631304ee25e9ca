"""`import edgecv` must stay light: no runtime, cv2 or TensorFlow until a model is loaded."""

import json
import subprocess
import sys

HEAVY = ["onnxruntime", "openvino", "ai_edge_litert", "tflite_runtime", "cv2", "tensorflow", "keras", "onnx"]


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_import_edgecv_loads_no_runtime_cv2_or_tensorflow():
    loaded = _modules_after("import edgecv")
    assert not {m for m in HEAVY if m in loaded}
    assert "numpy" not in loaded  # even numpy waits until it is needed


def test_touching_the_api_still_imports_no_runtime():
    loaded = _modules_after("import edgecv\nedgecv.load\nedgecv.Model\nimport edgecv.bench, edgecv.cli.main")
    assert "numpy" in loaded
    assert not {m for m in HEAVY if m in loaded}


def test_cli_help_imports_no_tensorflow():
    loaded = _modules_after("from edgecv.cli.main import build_parser\nbuild_parser().format_help()")
    assert not {m for m in HEAVY if m in loaded}


def test_importing_edgecv_sets_no_environment_or_logging():
    code = (
        "import os, logging; before = dict(os.environ); handlers = list(logging.getLogger().handlers)\n"
        "import edgecv, edgecv.model, edgecv.bench\n"
        "assert dict(os.environ) == before, 'environment changed'\n"
        "assert logging.getLogger().handlers == handlers, 'logging configured'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
