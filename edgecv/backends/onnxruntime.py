"""ONNX Runtime backend for ``.onnx`` on the CPU execution provider."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgecv.backends.base import Backend, RuntimeSettings, Session, default_threads, first_line
from edgecv.deps import require, version_of
from edgecv.errors import ModelFileError
from edgecv.tensors import TensorInfo, normalize_shape

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


# "[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Add node. Name:'add' Status
# Message: /onnxruntime_src/.../element_wise_ops.h:563 void onnxruntime::BroadcastIterator::Init(ptrdiff_t,
# ptrdiff_t) axis == 1 || axis == largest was false. Attempting to broadcast ..."
_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_NODE = re.compile(r"^Non-zero status code returned while running (\w+) node\. Name:'(.*?)' Status Message: (.*)$", re.S)
_WHERE = re.compile(r"^\S+\.(?:h|cc|cpp):\d+ (?:[^()]*::[^()]*\([^()]*\)(?: const)? )?")


def ort_message(exc: BaseException) -> str:
    """ONNX Runtime's error as one line: the status prefix, source path and C++ signature dropped.

    Example:
        >>> ort_message(RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Unexpected input data type. "
        ...                          "Actual: (tensor(int64)) , expected: (tensor(float))"))
        'Unexpected input data type. Actual: (tensor(int64)) , expected: (tensor(float))'
    """
    text = _STATUS.sub("", str(exc).strip())
    if m := _NODE.match(text):
        text = f"{m.group(1)} node {m.group(2)!r}: {_WHERE.sub('', m.group(3).strip())}"
    return first_line(RuntimeError(text))


def _failures() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's own exception types (Fail, InvalidArgument, RuntimeException, ...), plain Exceptions."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    own = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return own + (RuntimeError, ValueError)


def _info(node, position: int) -> TensorInfo:
    dtype = _ORT_TYPES.get(node.type)
    if dtype is None:
        raise ModelFileError(f"tensor {node.name!r} has type {node.type}, which edgecv does not feed")
    return TensorInfo(node.name, normalize_shape(node.shape), dtype, index=position)


class OnnxRuntimeSession(Session):
    def __init__(self, session) -> None:
        self.raw = session
        self.inputs = [_info(n, i) for i, n in enumerate(session.get_inputs())]
        self.outputs = [_info(n, i) for i, n in enumerate(session.get_outputs())]
        self._in_names = [t.name for t in self.inputs]
        self._out_names = [t.name for t in self.outputs]
        self._run = session.run
        self.failures = _failures()

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self._run(self._out_names, dict(zip(self._in_names, arrays)))

    def message(self, exc: BaseException) -> str:
        return ort_message(exc)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    extra = "onnxruntime"
    modules = ("onnxruntime",)

    def runs_on_cpu(self, settings: RuntimeSettings) -> bool:
        return not settings.providers or "CPUExecutionProvider" in settings.providers

    def import_runtime(self):
        return require("onnxruntime", extra=self.extra, purpose="run .onnx files")

    def open(self, path: Path, *, threads: int | None, shared_cores: bool = False) -> Session:
        ort = self.import_runtime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = default_threads(threads)
        options.inter_op_num_threads = 1
        if shared_cores:
            # Its pool threads spin between calls by default: 0.67 against 1.0 ms for the built-in detector
            # alone, but CPU the other stages need (8 served streams: 105 -> 120 frames/s without spinning).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 4  # fatal only: its errors reach the user as edgecv's one line, not twice
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidProtobuf, ...)
            # ORT repeats the path ("Load model from <path> failed:"), which would crowd out the reason.
            why = ort_message(RuntimeError(str(exc).replace(f"Load model from {path} failed:", "")))
            raise ModelFileError(f"cannot load {path} with ONNX Runtime: {why}") from None
        return OnnxRuntimeSession(session)

    def version(self) -> str | None:
        v = version_of("onnxruntime")
        return f"onnxruntime {v}" if v else None
