"""LiteRT backend for ``.tflite``: ai-edge-litert, else tflite-runtime, else TensorFlow's tf.lite."""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import logging
import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from edgecv.backends.base import Backend, RuntimeSettings, Session, default_threads
from edgecv.deps import is_installed, version_of
from edgecv.errors import MissingDependencyError, ModelFileError
from edgecv.tensors import QuantParams, TensorInfo, normalize_shape

log = logging.getLogger(__name__)

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


# LiteRT's error reporter glues its messages together ("...was not true.Node number 3 (CONV_2D) failed to
# prepare.", ".../ops_custom Node number 192 ..."): a message ends where a period is directly followed by a
# capital letter or a source path, and before "Node number N (" (even glued to a word: "runtimeNode number 1").
_JOINED = re.compile(r"(?<=[.!?])(?=[A-Z]|tflite/|tensorflow/)|\s+(?=Node number \d+ \()|(?<=[a-z])(?=Node number \d+ \()")
_SOURCE = re.compile(r"^((?:\S+/)?\S+\.(?:cc|cpp|h)):(\d+)\s+(.*)$")
_NOISE = re.compile(r"^(INFO:|Failed to apply the default TensorFlow Lite delegate|Ignoring failed application of the default "
                    r"TensorFlow Lite delegate|Registration failed)")
_TENSOR = re.compile(r"^Tensor (\d+) has invalid quantization parameters$")
_NODE = re.compile(r"^Node number (\d+) \((\w+)\) failed to (\w+)$")
_PER_CHANNEL = re.compile(r"quantized_dimension|num_scales|per-axis|affine_quantization|scale->size|zero_point->size")


def litert_message(text: str, path: Path | None = None) -> str:
    """LiteRT's multi-part error as one readable line: what failed (the tensor or op, named from the file when
    it can be read) first, then why, sources in parentheses, boilerplate dropped.

    Example:
        >>> litert_message("tflite/kernels/conv.cc:573 (scale->size == channels_out) was not true.Node number 3 (CONV_2D) failed to prepare.")
        'op 3 (CONV_2D) failed to prepare: invalid per-channel quantization: (scale->size == channels_out) was not true (tflite/kernels/conv.cc:573)'
    """
    parts: list[str] = []
    for line in text.splitlines():
        for part in _JOINED.split(line.strip()):
            part = part.strip().rstrip(".").strip()
            if part and not _NOISE.match(part) and part not in parts:
                parts.append(part)
    subject, details = None, []
    for part in parts:
        if m := _TENSOR.match(part):
            subject = f"{_tensor_name(path, int(m.group(1)))} has invalid quantization parameters"
        elif m := _NODE.match(part):
            subject = f"{_op_name(path, int(m.group(1)), m.group(2))} failed to {m.group(3)}"
        elif m := _SOURCE.match(part):
            details.append(f"{m.group(3)} ({m.group(1)}:{m.group(2)})")
        else:
            details.append(part)
    if not details and subject is None:
        return "no message from LiteRT"
    why = "; ".join(details)
    if _PER_CHANNEL.search(why) and (subject is None or "quantization" not in subject):
        why = f"invalid per-channel quantization: {why}"
    return f"{subject}: {why}" if subject and why else subject or why


def _main_graph(path: Path | None):
    if path is None:
        return None
    from edgecv.flatbuffer import read_tflite

    try:
        return read_tflite(path)[0]
    except (ModelFileError, OSError):
        return None


def _tensor_name(path: Path | None, index: int) -> str:
    """``tensor 6 'conv/weights' [16,5,5,8]``, or ``tensor 6`` when the file cannot tell."""
    graph = _main_graph(path)
    if graph is None or not 0 <= index < len(graph.tensors):
        return f"tensor {index}"
    t = graph.tensors[index]
    return f"tensor {index} {t.name!r} [{','.join(map(str, t.shape))}]"


def _op_name(path: Path | None, index: int, op_type: str) -> str:
    """``op 3 (CONV_2D 'conv2d_1')``: named after its first output, as TFLite ops have no names."""
    graph = _main_graph(path)
    if graph is None or not 0 <= index < len(graph.ops) or not graph.ops[index].outputs:
        return f"op {index} ({op_type})"
    out = graph.ops[index].outputs[0]
    name = graph.tensors[out].name.split(";")[0] if 0 <= out < len(graph.tensors) else ""
    return f"op {index} ({op_type} {name!r})" if name else f"op {index} ({op_type})"


_FD2 = threading.RLock()  # one thread at a time moves fd 2, or two would restore each other's file


@contextlib.contextmanager
def info_lines_to_debug_log() -> Iterator[None]:
    """Run the block with file descriptor 2 in a temporary file, then send LiteRT's ``INFO:`` lines to the
    debug log and write any other line back to fd 2.

    LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." from C++ straight to fd 2 when a
    process first loads a model, past Python's ``sys.stderr`` and with no setting to stop it. Lines another thread writes meanwhile
    reach the terminal once the block ends. Moves nothing when fd 2 is not open.

    Example:
        >>> with info_lines_to_debug_log():                                # doctest: +SKIP
        ...     interpreter = Interpreter(model_path="detect.tflite")
    """
    with _FD2, tempfile.TemporaryFile() as tmp:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            saved = None
        if saved is None:
            yield
            return
        os.dup2(tmp.fileno(), 2)
        crash_traces = faulthandler.is_enabled()
        if crash_traces:  # a crash in the load still shows its trace on the terminal
            faulthandler.enable(file=saved)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            if crash_traces:
                faulthandler.enable(file=2)
            os.close(saved)
            tmp.seek(0)
            other = []
            for line in tmp.read().decode(errors="replace").splitlines(keepends=True):
                if line.startswith("INFO: "):
                    log.debug("LiteRT: %s", line.rstrip())
                else:
                    other.append(line)
            if other:
                os.write(2, "".join(other).encode())


class LiteRTSession(Session):
    resizes = True

    def __init__(self, interpreter, path: Path | None = None) -> None:
        self.raw = interpreter
        self._path = path
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

    def message(self, exc: BaseException) -> str:
        return litert_message(str(exc), self._path)


class LiteRTBackend(Backend):
    name = "litert"
    extra = "litert"
    modules = ("ai_edge_litert", "tflite_runtime", "tensorflow")

    def runs_on_cpu(self, settings: RuntimeSettings) -> bool:
        return True  # LiteRT's built-in kernels always run what a delegate leaves

    def import_runtime(self):
        return _interpreter_class()

    def open(self, path: Path, *, threads: int | None, shared_cores: bool = False) -> Session:
        interpreter_cls = _interpreter_class()
        try:
            with info_lines_to_debug_log():
                interpreter = interpreter_cls(model_path=str(path), num_threads=default_threads(threads))
                return LiteRTSession(interpreter, path)
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"cannot load {path} with LiteRT: {litert_message(str(exc), path)}") from None

    def version(self) -> str | None:
        for module, _, dist in _PROVIDERS:
            if is_installed(module.split(".")[0]):
                return f"{dist} {version_of(dist)}"
        return None
