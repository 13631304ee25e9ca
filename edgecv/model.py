"""One Model object for every artifact format and backend.

Example:
    >>> model = load("model.fp32.tflite", threads=2)            # doctest: +SKIP
    >>> [t.describe() for t in model.inputs]                      # doctest: +SKIP
    ['input 1x224x224x3 float32 NHWC']
    >>> scores, = model.run(batch)                                # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from edgecv.backends import BACKENDS, Session, get_backend
from edgecv.backends.base import first_line
from edgecv.errors import BackendError, EdgeCVError, InputError, MissingDependencyError, ModelFileError
from edgecv.formats import ArtifactFormat, check_model_file
from edgecv.integrity import NO_MANIFEST, Checked, Verification, verified_manifest
from edgecv.manifest import Manifest
from edgecv.tensors import QuantParams, TensorInfo

Inputs = np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]


class Model:
    """A loaded artifact. Create it with :func:`load`.

    ``run()`` checks inputs against ``inputs`` (count, shape, dtype) and raises :class:`InputError` in
    one line when they do not fit; what the runtime itself raises while running becomes a one-line
    :class:`BackendError`. With ``float_io=True``, integer-quantized inputs are fed as float and
    quantized here, and quantized outputs come back dequantized to float32. ``verification`` says how
    :func:`load` checked the files against their manifest (:data:`edgecv.integrity.VERIFICATIONS`).
    """

    def __init__(
        self,
        session: Session,
        *,
        path: Path,
        fmt: ArtifactFormat,
        backend: str,
        manifest: Manifest | None = None,
        float_io: bool = False,
        load_seconds: float = 0.0,
        verification: Verification = NO_MANIFEST,
    ) -> None:
        self.path = path
        self.verification = verification
        self.format = fmt.name
        self.backend = backend
        self.manifest = manifest
        self.float_io = float_io
        self.load_seconds = load_seconds
        self._session = session
        self.inputs = _merge(session.inputs, manifest.inputs if manifest else [])
        self.outputs = _merge(session.outputs, manifest.outputs if manifest else [])
        self._by_name = {t.name: i for i, t in enumerate(self.inputs)}
        self._shapes: list[tuple[int, ...]] | None = None
        # Precomputed so that run() costs one dtype and one shape comparison per input when all is well.
        self._n_in = len(self.inputs)
        self._dtypes = [np.dtype(t.dtype) for t in self.inputs]
        self._fast = [_fast_shape(t.shape) for t in self.inputs]
        self._batch1 = any(t.shape and t.shape[0] == 1 for t in self.inputs)
        self._resizes = session.resizes
        self._dequant = [i for i, t in enumerate(self.outputs) if t.is_quantized] if float_io else []
        self._graph_precision: str | None = None

    # -- description -------------------------------------------------------------------------------------
    @property
    def raw(self):
        """The runtime's own object (Interpreter, InferenceSession or CompiledModel)."""
        return self._session.raw

    @property
    def labels(self) -> list[str] | None:
        return self.manifest.labels if self.manifest else None

    @property
    def precision(self) -> str:
        """The manifest's precision; without a manifest, read from the graph (:mod:`edgecv.precision`)."""
        if self.manifest:
            return self.manifest.precision
        if self._graph_precision is None:
            from edgecv.compat import read_graph

            self._graph_precision = read_graph(self.path).precision
        return self._graph_precision

    def __repr__(self) -> str:
        ins = ", ".join(t.describe() for t in self.inputs)
        return f"Model({self.path.name!r}, format={self.format}, backend={self.backend}, inputs=[{ins}])"

    # -- running -----------------------------------------------------------------------------------------
    def run(self, inputs: Inputs) -> list[np.ndarray]:
        """Run on one array (single-input models), a list in input order, or a dict by input name.

        Returns the outputs as a list in ``outputs`` order. A model with a fixed batch of 1 given a larger
        batch runs once per item and stacks the results.
        """
        arrays = [inputs] if (type(inputs) is np.ndarray and self._n_in == 1) else self._arrange(inputs)
        for i, a in enumerate(arrays):
            start, shape = self._fast[i]
            if a.dtype != self._dtypes[i] or a.shape[start:] != shape:
                arrays[i] = self._check(self.inputs[i], a)  # full check: quantizes, or explains the mismatch
        if self._batch1 and arrays[0].ndim and arrays[0].shape[0] > 1:
            n = arrays[0].shape[0]
            parts = [self._invoke([a[i : i + 1] for a in arrays]) for i in range(n)]
            outs = [np.concatenate(p, axis=0) for p in zip(*parts)]
        else:
            outs = self._invoke(arrays)
        for i in self._dequant:
            outs[i] = self.outputs[i].quant.dequantize(outs[i])
        return outs

    __call__ = run

    def _invoke(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        try:
            if self._resizes:
                shapes = [a.shape for a in arrays]
                if shapes != self._shapes:
                    self._session.prepare(shapes)
                    self._shapes = shapes
            return self._session.run(arrays)
        except self._session.failures as exc:  # the runtime's own exception types (ONNX Runtime's Fail, ...)
            raise BackendError(f"{self.backend} failed to run {self.path.name}: {self._session.message(exc)}") from None

    def _arrange(self, inputs: Inputs) -> list[np.ndarray]:
        if isinstance(inputs, np.ndarray):
            arrays = [inputs]
        elif isinstance(inputs, Mapping):
            unknown = set(inputs) - set(self._by_name)
            if unknown:
                raise InputError(f"unknown input name(s) {sorted(unknown)}; the model's inputs are {list(self._by_name)}")
            missing = [n for n in self._by_name if n not in inputs]
            if missing:
                raise InputError(f"missing input(s) {missing}; the model's inputs are {list(self._by_name)}")
            arrays = [inputs[t.name] for t in self.inputs]
        elif isinstance(inputs, (list, tuple)):
            arrays = list(inputs)  # a copy: run() never changes the caller's list
        else:
            raise InputError(f"inputs: expected a numpy array, a list of arrays or a dict, got {type(inputs).__name__}")
        if len(arrays) != len(self.inputs):
            raise InputError(f"expected {len(self.inputs)} input(s), got {len(arrays)}")
        for info, a in zip(self.inputs, arrays):
            if not isinstance(a, np.ndarray):
                raise InputError(f"input {info.name!r}: expected a numpy array, got {type(a).__name__}")
        return arrays

    def _check(self, info: TensorInfo, a: np.ndarray) -> np.ndarray:
        if a.ndim != len(info.shape) or any(e is not None and e != g for e, g in zip(info.shape[1:], a.shape[1:])):
            want = "x".join("?" if d is None else str(d) for d in info.shape)
            got = "x".join(str(d) for d in a.shape)
            raise InputError(f"input {info.name!r}: expected shape {want}, got {got}")
        if info.shape and info.shape[0] not in (None, 1) and a.shape[0] != info.shape[0]:
            raise InputError(f"input {info.name!r}: expected batch {info.shape[0]}, got {a.shape[0]}")
        if a.dtype.name == info.dtype:
            return a
        if self.float_io and info.is_quantized and np.issubdtype(a.dtype, np.floating):
            return info.quant.quantize(a, np.dtype(info.dtype))
        hint = " (load with float_io=True to feed float)" if info.is_quantized else ""
        raise InputError(f"input {info.name!r}: expected dtype {info.dtype}, got {a.dtype.name}{hint}")


def _fast_shape(shape: tuple[int | None, ...]) -> tuple[int, tuple | None]:
    """(first axis, dims) that a well-formed input's ``shape[first:]`` equals; None dims force the full check."""
    start = 0 if (shape and shape[0] not in (None, 1)) else 1
    dims = tuple(shape[start:])
    return (start, None) if None in dims else (start, dims)


def _merge(runtime: list[TensorInfo], described: list[dict]) -> list[TensorInfo]:
    """Runtime facts win; the manifest adds layout and quantization the runtime cannot report."""
    by_name = {d.get("name"): d for d in described}
    merged = []
    for i, info in enumerate(runtime):
        d = by_name.get(info.name) or (described[i] if i < len(described) else None)
        if d is None:
            merged.append(info)
            continue
        layout = d.get("layout") or info.layout
        quant = info.quant
        if quant is None and d.get("quantization"):
            quant = QuantParams.from_dict(d["quantization"])
        merged.append(replace(info, layout=layout, quant=quant))
    return merged


def choose_backend(fmt: ArtifactFormat, requested: str | None) -> str:
    """The backend to run ``fmt`` with: the one asked for, else the first installed one."""
    if requested is not None:
        backend = get_backend(requested)
        if fmt.name not in backend.formats:
            valid = ", ".join(fmt.backends)
            raise BackendError(f"backend {requested!r} cannot run {fmt.name} files; use one of: {valid}")
        return requested
    for name in fmt.backends:
        if BACKENDS[name].available():
            return name
    first = BACKENDS[fmt.backends[0]]
    raise MissingDependencyError(first.name, first.extra, f"run {fmt.suffix} files")


def load(
    path: str | Path,
    *,
    backend: str | None = None,
    threads: int | None = None,
    float_io: bool = False,
    isolate: bool = True,
    verify: bool = True,
    shared_cores: bool = False,
) -> Model:
    """Load a ``.tflite``, ``.onnx`` or OpenVINO ``.xml`` artifact into a :class:`Model`.

    ``backend`` picks the runtime (``litert``, ``onnxruntime``, ``openvino``); by default the first one
    installed for the format. ``threads`` defaults to every core. A manifest beside the file is read.
    With ``verify`` (the default), the files its manifest hashes are hashed again before any runtime reads
    them, and a mismatch raises :class:`~edgecv.errors.IntegrityError` (:mod:`edgecv.integrity`);
    ``model.verification`` says what was checked. With ``isolate`` (the default), a format whose runtime can
    crash on corrupted files (``.tflite``) is first loaded and run once in a child process; the result is
    cached per file content. ``shared_cores``: the model shares the cores with other work (a pipeline, other
    streams): runtimes that would spin their threads between calls let them sleep (ONNX Runtime).

    Example:
        >>> model = load("mnist.fp32.onnx", backend="openvino", threads=2)   # doctest: +SKIP
        >>> model.verification                                                # doctest: +SKIP
        'verified'
    """
    path = Path(path)
    # Verified before anything else reads the file (a missing file is check_model_file's error).
    checked = verified_manifest(path, verify=verify) if path.is_file() else Checked(None, NO_MANIFEST, {})
    fmt = check_model_file(path)
    name = choose_backend(fmt, backend)
    if isolate and fmt.isolate:
        from edgecv.probe import check_in_child

        check_in_child(path, backend=name, digest=checked.digests.get(path.name))
    start = time.perf_counter()
    session = _open_session(path, name, threads, shared_cores)
    if not session.inputs or not session.outputs:  # an IR with an empty <net> opens "fine", and runs nothing
        raise ModelFileError(f"{path} has {len(session.inputs)} input(s) and {len(session.outputs)} output(s): "
                             "there is nothing to run; the file is corrupted or not a model")
    return Model(
        session,
        path=path,
        fmt=fmt,
        backend=name,
        manifest=checked.manifest,
        float_io=float_io,
        load_seconds=time.perf_counter() - start,
        verification=checked.verification,
    )


def _open_session(path: Path, backend: str, threads: int | None, shared_cores: bool = False):
    """The backend's session; what a runtime raises that the backend did not name (a damaged file can make a
    runtime's bindings fail anywhere: a tensor name that is not UTF-8, a shape that does not convert) is
    one :class:`ModelFileError` line too."""
    try:
        return BACKENDS[backend].open(path, threads=threads, shared_cores=shared_cores)
    except EdgeCVError:
        raise
    except Exception as exc:
        raise ModelFileError(f"cannot load {path} with {backend}: {type(exc).__name__}: {first_line(exc)}") from None

