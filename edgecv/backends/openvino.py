"""OpenVINO backend for IR ``.xml`` (+ ``.bin``) and ``.onnx``, on the CPU device."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgecv.backends.base import Backend, RuntimeSettings, Session, default_threads, first_line
from edgecv.deps import require, version_of
from edgecv.errors import ModelFileError
from edgecv.tensors import TensorInfo


# "[CPU] Add node with name 'y' Check 'input_shape[j] == 1' failed at src/plugins/.../eltwise.cpp:52:" then the
# reason on the next line.
_FAILED_AT = re.compile(r" failed at \S+:\d+:$")


def openvino_message(exc: BaseException) -> str:
    """OpenVINO's error as one line: where-it-was-raised lines dropped, a failed check joined to its reason.

    Example:
        >>> openvino_message(RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp:224:\\n"
        ...     "[CPU] Add node with name 'y' Check 'input_shape[j] == 1' failed at src/eltwise.cpp:52:\\n"
        ...     "Eltwise shape infer input shapes dim index: 0 mismatch\\n"))
        "[CPU] Add node with name 'y' Check 'input_shape[j] == 1' failed: Eltwise shape infer input shapes dim index: 0 mismatch"
    """
    lines = [ln.strip() for ln in str(exc).splitlines()
             if ln.strip() and not (ln.strip().startswith("Exception from ") and ln.strip().endswith(":"))]
    if len(lines) > 1 and _FAILED_AT.search(lines[0]):
        return first_line(RuntimeError(f"{_FAILED_AT.sub(' failed', lines[0])}: {lines[1]}"))
    return first_line(RuntimeError("\n".join(lines))) if lines else first_line(exc)


def _info(port, position: int) -> TensorInfo:
    names = port.get_names()
    name = port.get_any_name() if names else f"{'tensor'}_{position}"
    shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    return TensorInfo(name, shape, np.dtype(port.get_element_type().to_dtype()).name, index=position)


class OpenVINOSession(Session):
    failures = (RuntimeError, ValueError, TypeError)  # TypeError: inputs its bindings cannot convert

    def __init__(self, compiled) -> None:
        self.raw = compiled
        self.inputs = [_info(p, i) for i, p in enumerate(compiled.inputs)]
        self.outputs = [_info(p, i) for i, p in enumerate(compiled.outputs)]
        self._request = compiled.create_infer_request()
        self._infer = self._request.infer
        self._n_in = len(self.inputs)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        # infer() copies outputs out of the request's buffers, so results stay valid after the next run.
        result = self._infer(dict(zip(range(self._n_in), arrays)), share_inputs=True)
        return list(result.to_tuple())

    def message(self, exc: BaseException) -> str:
        return openvino_message(exc)


class OpenVINOBackend(Backend):
    name = "openvino"
    extra = "openvino"
    modules = ("openvino",)

    def runs_on_cpu(self, settings: RuntimeSettings) -> bool:
        return not settings.devices or "CPU" in settings.devices

    def import_runtime(self):
        return require("openvino", extra=self.extra, purpose="run OpenVINO IR files")

    def open(self, path: Path, *, threads: int | None, shared_cores: bool = False) -> Session:
        ov = self.import_runtime()
        config = {
            "INFERENCE_NUM_THREADS": default_threads(threads),
            "PERFORMANCE_HINT": "LATENCY",
            # Keep fp32 maths unless the artifact itself is lower precision: some CPUs default to bf16/fp16.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        try:
            core = ov.Core()
            compiled = core.compile_model(str(path), "CPU", config)
            return OpenVINOSession(compiled)  # its infer request allocates: inside the same wrapping
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            raise ModelFileError(f"cannot load {path} with OpenVINO: {openvino_message(exc)}") from None

    def version(self) -> str | None:
        v = version_of("openvino")
        return f"openvino {v}" if v else None
