"""Source models a user brings, in one table: Keras (.keras, .h5), TF SavedModel folders, ONNX and float
TFLite. Each source describes its inputs and outputs and computes reference outputs for validation.

Example:
    >>> src = open_source("classifier.keras")      # doctest: +SKIP
    >>> src.kind, [t.describe() for t in src.inputs]   # doctest: +SKIP
    ('keras', ['input 1x64x64x3 float32 NHWC'])
"""

from __future__ import annotations

import re
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Mapping

import numpy as np

from edgecv.child import call
from edgecv.errors import ConversionError, InputError, ModelFileError, UnsafeModelError, UnsupportedFormatError
from edgecv.model import load
from edgecv.tensors import TensorInfo, normalize_shape
from edgecv.converters.source_scan import TRUST_HINT, check_onnx_external_data, refuse_unsafe_saved_model
from edgecv.converters.tf_env import child_env, import_tensorflow


class Source(ABC):
    """A model to export. Views in other formats are made on demand in a work folder and cached."""

    kind: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self._views: dict[str, Path] = {}

    @abstractmethod
    def reference(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The source model's own outputs for ``arrays`` (one batch), in ``outputs`` order."""

    def view(self, kind: str, work: Path) -> Path:
        """This model as a ``saved_model`` folder, ``onnx`` or ``tflite`` file inside ``work``."""
        if kind not in self._views:
            maker = getattr(self, f"_make_{kind}", None)
            if maker is None:
                raise ConversionError(f"a {self.kind} source cannot be turned into {kind}")
            self._views[kind] = maker(work)
        return self._views[kind]

    @property
    def layout(self) -> str:
        return self.inputs[0].layout if self.inputs else "other"

    def check_convertible(self, path: ConversionPath) -> None:
        """Raise :class:`ConversionError` when this source holds something the conversion ``path`` cannot
        convert; sources with nothing to check pass."""


def _natural_key(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


class KerasSource(Source):
    """A Keras model. Keras's safe mode refuses the Python code a file can hold (Lambda layers, functions
    from modules outside Keras); ``trust_source=True`` turns it off."""

    kind = "keras"

    def __init__(self, path: Path, model=None, *, trust_source: bool = False) -> None:
        super().__init__(path)
        import_tensorflow()
        import keras

        if model is None:
            try:
                model = keras.saving.load_model(str(path), compile=False, safe_mode=not trust_source)
            except Exception as exc:  # Keras raises many types for bad files
                unsafe = _safe_mode_refusal(exc)
                if unsafe:
                    raise UnsafeModelError(f"Keras model {path} is refused: it holds Python code that Keras's safe mode "
                                           f"does not load ({unsafe}); {TRUST_HINT}") from None
                raise ModelFileError(f"cannot load Keras model {path}: {_first_line(_keras_cause(exc))}") from None
        self.model = model
        self.inputs = [
            TensorInfo(_tensor_name(t, f"input_{i}"), normalize_shape(t.shape), str(t.dtype), index=i)
            for i, t in enumerate(model.inputs)
        ]
        out_names = list(getattr(model, "output_names", None) or [])
        self.outputs = [
            TensorInfo(out_names[i] if i < len(out_names) else f"output_{i}", normalize_shape(t.shape), str(t.dtype), index=i)
            for i, t in enumerate(model.outputs)
        ]

    def reference(self, arrays):
        out = self.model(arrays if len(arrays) > 1 else arrays[0], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        return [np.asarray(o) for o in out]

    def _make_saved_model(self, work: Path) -> Path:
        target = work / "saved_model"
        self.model.export(str(target), format="tf_saved_model", verbose=False)
        return target

    def _make_onnx(self, work: Path) -> Path:
        tf = import_tensorflow()
        import tf2onnx

        target = work / "source.onnx"
        spec = tuple(tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in self.inputs)
        tf2onnx.convert.from_keras(self.model, input_signature=spec, opset=ONNX_OPSET, output_path=str(target))
        return target


class SavedModelSource(Source):
    """A SavedModel folder. Loading it runs its resource initializers and converting or running it runs its
    functions' ops, so unless ``trust_source`` its graph is scanned first, without running anything
    (:func:`edgecv.converters.source_scan.scan_saved_model`), and ops with side effects are refused."""

    kind = "saved_model"

    def __init__(self, path: Path, *, trust_source: bool = False) -> None:
        super().__init__(path)
        if not trust_source:
            refuse_unsafe_saved_model(path)
        tf = import_tensorflow()
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise ModelFileError(f"cannot load SavedModel {path}: {_first_line(exc)}") from None
        if "serving_default" not in loaded.signatures:
            raise ModelFileError(f"SavedModel {path} has no 'serving_default' signature")
        self._loaded = loaded  # keeps the function's variables alive
        self._fn = loaded.signatures["serving_default"]
        specs = self._fn.structured_input_signature[1]
        self._in_keys = sorted(specs, key=_natural_key)
        self._out_keys = sorted(self._fn.structured_outputs, key=_natural_key)
        self.inputs = [
            TensorInfo(k, normalize_shape(specs[k].shape), specs[k].dtype.name, index=i) for i, k in enumerate(self._in_keys)
        ]
        outs = self._fn.structured_outputs
        self.outputs = [
            TensorInfo(k, normalize_shape(outs[k].shape), outs[k].dtype.name, index=i) for i, k in enumerate(self._out_keys)
        ]

    def reference(self, arrays):
        # The serving function takes exactly its signature's shapes: with a fixed batch (1, say), a larger
        # batch that is a multiple of it runs in slices of that batch.
        n = arrays[0].shape[0] if arrays and arrays[0].ndim else 0
        batch = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        if batch and n > batch and n % batch == 0:
            parts = [self._run([a[i : i + batch] for a in arrays]) for i in range(0, n, batch)]
            return [np.concatenate(p, axis=0) for p in zip(*parts)]
        return self._run(arrays)

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        for info, a in zip(self.inputs, arrays):
            if a.ndim != len(info.shape) or any(e is not None and e != g for e, g in zip(info.shape, a.shape)):
                want = "x".join("?" if d is None else str(d) for d in info.shape)
                raise InputError(f"SavedModel {self.path} input {info.name!r}: expected shape {want}, "
                                 f"got {'x'.join(str(d) for d in a.shape)}")
        try:
            result = self._fn(**dict(zip(self._in_keys, arrays)))
            return [np.asarray(result[k]) for k in self._out_keys]
        except Exception as exc:  # TensorFlow raises many types; the source failing is one line
            raise ModelFileError(f"SavedModel {self.path} failed to run: {_tf_error(exc)}") from None

    def _make_saved_model(self, work: Path) -> Path:
        return self.path

    def _make_onnx(self, work: Path) -> Path:
        return saved_model_to_onnx(self.path, work / "source.onnx", failure=f"tf2onnx could not convert {self.path}")


class RuntimeSource(Source):
    """A source that edgecv's own runtime can run: ONNX or float TFLite."""

    def __init__(self, path: Path, *, trust_source: bool = False) -> None:
        super().__init__(path)
        self.model = load(path)  # checks the file first
        self.inputs = self.model.inputs
        self.outputs = self.model.outputs

    def reference(self, arrays):
        return self.model.run(arrays)


class OnnxSource(RuntimeSource):
    """An ONNX model. External data stored outside its folder is refused, trusted or not (the runtimes
    refuse it too)."""

    kind = "onnx"

    def __init__(self, path: Path, *, trust_source: bool = False) -> None:
        check_onnx_external_data(path)
        super().__init__(path, trust_source=trust_source)

    def _make_onnx(self, work: Path) -> Path:
        return self.path

    def _make_tflite(self, work: Path) -> Path:
        from edgecv.converters.onnx_to_tflite import onnx_to_tflite

        return onnx_to_tflite(self.path, work / "onnx2tf", precision="fp32")

    def _make_saved_model(self, work: Path) -> Path:
        # onnx2tf writes a SavedModel (with NHWC inputs) beside its TFLite files; quantizing TFLite starts there.
        return self.view("tflite", work).parent


class TFLiteSource(RuntimeSource):
    kind = "tflite"

    def __init__(self, path: Path, *, trust_source: bool = False) -> None:
        super().__init__(path, trust_source=trust_source)
        if any(t.dtype not in ("float32", "float16") for t in self.inputs):
            raise ModelFileError(f"{path} has integer inputs; only float .tflite models can be a source for export")

    def check_convertible(self, path: ConversionPath) -> None:
        from edgecv.flatbuffer import read_tflite

        found = {op.name for graph in read_tflite(self.path) for op in graph.ops if op.custom}
        refused = sorted(found - path.custom_ops)
        if refused:
            named = ", ".join(f"{op} ({CUSTOM_OP_ORIGINS[op]})" if op in CUSTOM_OP_ORIGINS else op for op in refused)
            ops = "custom op" if len(refused) == 1 else "custom ops"
            raise ConversionError(f"tflite source uses {ops} {named}, which {path.tool} cannot convert to {path.into}")

    def _make_tflite(self, work: Path) -> Path:
        from edgecv.converters.densify import dense_view

        # A sparse model's dense copy: tf2onnx reads neither sparse constants nor DENSIFY ops.
        return dense_view(self.path, work)

    def _make_onnx(self, work: Path) -> Path:
        self.check_convertible(TF2ONNX)
        import_tensorflow()
        import onnx
        import tf2onnx

        model, _ = tf2onnx.convert.from_tflite(str(self.view("tflite", work)), opset=ONNX_OPSET)
        refuse_unconverted_ops(model, "tf2onnx")  # before anything is written
        target = work / "source.onnx"
        onnx.save(model, str(target))
        return target

    def _make_saved_model(self, work: Path) -> Path:
        # A float .tflite cannot be re-quantized directly: TFLite -> ONNX (tf2onnx) -> SavedModel (onnx2tf),
        # which the TFLite converter then quantizes like any other.
        from edgecv.converters.onnx_to_tflite import onnx_to_tflite

        return onnx_to_tflite(self.view("onnx", work), work / "onnx2tf", precision="fp32").parent


ONNX_OPSET = 17



@dataclass(frozen=True)
class ConversionPath:
    """A tool that reads a TFLite source into another format, and the custom TFLite ops it converts. Any
    other custom op is refused before converting: tf2onnx would write an ONNX graph that ONNX Runtime
    rejects, and OpenVINO fails naming no op. Each target declares its own path (OpenVINO's lives in
    :mod:`edgecv.converters.targets.openvino`)."""

    tool: str
    into: str
    custom_ops: frozenset[str] = frozenset()


TF2ONNX = ConversionPath("tf2onnx", "ONNX", frozenset({"TFLite_Detection_PostProcess"}))
_MEDIAPIPE_OPS = ("Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "TransformLandmarks",
                  "TransformTensorBilinear", "Landmarks2TransformMatrix")
CUSTOM_OP_ORIGINS = {op: "MediaPipe" for op in _MEDIAPIPE_OPS}


def refuse_unconverted_ops(model, tool: str) -> None:
    """Raise when ``model`` (an ONNX ModelProto) still holds ops ONNX does not define, as tf2onnx leaves the
    ops it could not convert (it logs "Unsupported ops" and writes them as they were)."""
    import onnx

    unknown = sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})
    if unknown:
        raise ConversionError(f"{tool} could not convert op{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} to ONNX")


@dataclass(frozen=True)
class SourceKind:
    """How to recognise and open one kind of source model."""

    name: str
    matches: Callable[[Path], bool]
    open: Callable[..., Source]  # (path, *, trust_source) -> Source
    describe: str


SOURCES: tuple[SourceKind, ...] = (
    SourceKind("saved_model", lambda p: p.is_dir() and (p / "saved_model.pb").is_file(), SavedModelSource, "a SavedModel folder"),
    SourceKind("keras", lambda p: p.suffix.lower() in (".keras", ".h5", ".hdf5"), KerasSource, ".keras/.h5"),
    SourceKind("onnx", lambda p: p.suffix.lower() == ".onnx", OnnxSource, ".onnx"),
    SourceKind("tflite", lambda p: p.suffix.lower() == ".tflite", TFLiteSource, "float .tflite"),
)


def open_source(path: str | Path, *, trust_source: bool = False) -> Source:
    """Open a source model by what ``path`` is; errors name what edgecv accepts. Unless ``trust_source``,
    a SavedModel's graph is scanned for ops with side effects and a Keras file is loaded in safe mode
    (docs/security.md)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model not found: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise ModelFileError(f"model file is empty: {path}")
    for kind in SOURCES:
        if kind.matches(path):
            return kind.open(path, trust_source=trust_source)
    accepted = ", ".join(k.describe for k in SOURCES)
    raise UnsupportedFormatError(f"{path}: not a model edgecv can export; it accepts {accepted}")


def source_from_keras(model, name: str = "model") -> KerasSource:
    """Wrap an in-memory Keras model (Python API)."""
    return KerasSource(Path(f"{name}.keras"), model=model)


def _tensor_name(t, default: str) -> str:
    name = getattr(t, "name", None) or default
    return name.split(":")[0]


def _safe_mode_refusal(exc: BaseException) -> str | None:
    """The first sentence of Keras's safe-mode refusal in ``exc``'s chain, or None when it is another failure."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if "safe_mode" in text:
            return _first_line(exc).split(". ")[0].rstrip(".")
        exc = exc.__cause__ or exc.__context__
    return None


def _tf_error(exc: BaseException) -> str:
    """One line for a TensorFlow failure. A graph op's error starts with "Graph execution error:" and a stack,
    and ends with the cause then ``[[{{node NAME}}]]``: that cause, and the node."""
    text = str(getattr(exc, "message", "") or exc)
    node = re.search(r"\[\[\{\{node ([^}]+)\}\}\]\]", text)
    if not text.startswith("Graph execution error") or node is None:
        return f"{type(exc).__name__}: {_first_line(exc)}"
    cause = [line.strip() for line in text[: node.start()].splitlines() if line.strip()]
    return f"{type(exc).__name__} at node {node.group(1)}: {_first_line(ValueError(cause[-1] if cause else text))}"


def _keras_cause(exc: BaseException) -> BaseException:
    """The innermost exception of Keras's "X could not be deserialized properly" chain (it wraps each layer's
    failure in its parent's), which names what is missing; ``exc`` itself otherwise."""
    while "could not be deserialized properly" in str(exc) and (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__
    return exc


def _first_line(exc: BaseException) -> str:
    from edgecv.backends.base import first_line

    return first_line(exc)


def saved_model_to_onnx(saved_model: Path, target: Path, *, failure: str, env: Mapping[str, str | None] | None = None) -> Path:
    """Convert a SavedModel folder to ``target`` (ONNX opset :data:`ONNX_OPSET`) with tf2onnx's command
    line, in a child process: tf2onnx has no SavedModel API. A failure is a :class:`ConversionError`
    starting with ``failure``; ``env`` is set over the child's environment.

    Example:
        >>> saved_model_to_onnx(Path("sm"), Path("work/source.onnx"), failure="tf2onnx could not convert sm")  # doctest: +SKIP
        PosixPath('work/source.onnx')
    """
    argv = ["--saved-model", str(saved_model), "--output", str(target), "--opset", str(ONNX_OPSET)]
    call("edgecv.converters.sources:tf2onnx_command", argv, failure=failure, error=ConversionError,
         env={**child_env(), **(env or {})})
    if not target.is_file():
        raise ConversionError(f"{failure}: tf2onnx wrote no file")
    return target


def tf2onnx_command(argv: list[str]) -> None:
    """The child process of :func:`saved_model_to_onnx`: ``python -m tf2onnx.convert ARGV``, in-process."""
    import tf2onnx.convert

    sys.argv = ["tf2onnx.convert", *argv]
    tf2onnx.convert.main()
