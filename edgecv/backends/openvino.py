"""OpenVINO backend for IR ``.xml`` (+ ``.bin``) and ``.onnx``, on the CPU device."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecv.backends.base import Backend, RuntimeSettings, Session, default_threads, first_line
from edgecv.deps import require, version_of
from edgecv.errors import ModelFileError
from edgecv.tensors import TensorInfo


def _info(port, position: int) -> TensorInfo:
    names = port.get_names()
    name = port.get_any_name() if names else f"{'tensor'}_{position}"
    shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
    return TensorInfo(name, shape, np.dtype(port.get_element_type().to_dtype()).name, index=position)


class OpenVINOSession(Session):
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


class OpenVINOBackend(Backend):
    name = "openvino"
    extra = "openvino"
    modules = ("openvino",)

    def runs_on_cpu(self, settings: RuntimeSettings) -> bool:
        return not settings.devices or "CPU" in settings.devices

    def import_runtime(self):
        return require("openvino", extra=self.extra, purpose="run OpenVINO IR files")

    def open(self, path: Path, *, threads: int | None) -> Session:
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
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            raise ModelFileError(f"cannot load {path} with OpenVINO: {first_line(exc)}") from None
        return OpenVINOSession(compiled)

    def version(self) -> str | None:
        v = version_of("openvino")
        return f"openvino {v}" if v else None
