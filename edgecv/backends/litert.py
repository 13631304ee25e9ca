"""LiteRT backend for ``.tflite``: ai-edge-litert, else tflite-runtime, else TensorFlow's tf.lite."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from edgecv.backends.base import Backend, Session, default_threads, first_line
from edgecv.deps import is_installed, version_of
from edgecv.errors import MissingDependencyError, ModelFileError
from edgecv.tensors import QuantParams, TensorInfo, normalize_shape

# (module, attribute path to Interpreter, distribution), in order of preference. tflite-runtime 2.14
# does not load with NumPy 2, so it and TensorFlow are fallbacks for older boards that have nothing else.
_PROVIDERS = (
    ("ai_edge_litert.interpreter", "Interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "Interpreter", "tflite-runtime"),
    ("tensorflow", "lite.Interpreter", "tensorflow"),  # the public tf.lite API, not the tensorflow.lite package
)


def _interpreter_class():
    for module, attr, _ in _PROVIDERS:
        if is_installed(module.split(".")[0]):
            try:
                obj = importlib.import_module(module)
            except ImportError:
                continue
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
    raise MissingDependencyError("ai-edge-litert", "litert", "run .tflite files")


def _quant(detail: dict) -> QuantParams | None:
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []))
    zeros = np.asarray(qp.get("zero_points", []))
    if scales.size == 0 or not np.any(scales):
        scale, zero = detail.get("quantization", (0.0, 0))
        if not scale:
            return None
        return QuantParams((float(scale),), (int(zero),))
    return QuantParams(tuple(float(s) for s in scales), tuple(int(z) for z in zeros), int(qp.get("quantized_dimension", 0)))


def _info(detail: dict, position: int) -> TensorInfo:
    signature = detail.get("shape_signature")
    shape = normalize_shape(signature if signature is not None and len(signature) else detail["shape"])
    return TensorInfo(detail["name"], shape, np.dtype(detail["dtype"]).name, quant=_quant(detail), index=position)


class LiteRTSession(Session):
    resizes = True

    def __init__(self, interpreter) -> None:
        self.raw = interpreter
        interpreter.allocate_tensors()
        ins = interpreter.get_input_details()
        outs = interpreter.get_output_details()
        self.inputs = [_info(d, i) for i, d in enumerate(ins)]
        self.outputs = [_info(d, i) for i, d in enumerate(outs)]
        self._in_idx = [d["index"] for d in ins]
        self._out_idx = [d["index"] for d in outs]
        self._shapes = [tuple(int(s) for s in d["shape"]) for d in ins]
        self._set = interpreter.set_tensor
        self._get = interpreter.get_tensor
        self._invoke = interpreter.invoke

    def prepare(self, shapes: list[tuple[int, ...]]) -> None:
        if shapes == self._shapes:
            return
        for idx, shape in zip(self._in_idx, shapes):
            self.raw.resize_tensor_input(idx, list(shape), strict=True)
        self.raw.allocate_tensors()
        self._shapes = list(shapes)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        for idx, arr in zip(self._in_idx, arrays):
            self._set(idx, arr)
        self._invoke()
        return [self._get(idx) for idx in self._out_idx]


class LiteRTBackend(Backend):
    name = "litert"
    extra = "litert"
    modules = ("ai_edge_litert", "tflite_runtime", "tensorflow")
    formats = ("tflite",)

    def import_runtime(self):
        return _interpreter_class()

    def open(self, path: Path, *, threads: int | None) -> Session:
        interpreter_cls = _interpreter_class()
        try:
            interpreter = interpreter_cls(model_path=str(path), num_threads=default_threads(threads))
            return LiteRTSession(interpreter)
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"cannot load {path} with LiteRT: {first_line(exc)}") from None

    def version(self) -> str | None:
        for module, _, dist in _PROVIDERS:
            if is_installed(module.split(".")[0]):
                return f"{dist} {version_of(dist)}"
        return None
