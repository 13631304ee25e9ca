"""The runtime backends, in one table. Add a backend by adding a module and a row here.

Example:
    >>> sorted(BACKENDS)
    ['litert', 'onnxruntime', 'openvino']
"""

from __future__ import annotations

from edgecv.backends.base import Backend, Session
from edgecv.backends.litert import LiteRTBackend
from edgecv.backends.onnxruntime import OnnxRuntimeBackend
from edgecv.backends.openvino import OpenVINOBackend
from edgecv.errors import BackendError

BACKENDS: dict[str, Backend] = {b.name: b for b in (LiteRTBackend(), OnnxRuntimeBackend(), OpenVINOBackend())}


def get_backend(name: str) -> Backend:
    """The backend called ``name``, or an error listing the valid names."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}") from None


__all__ = ["BACKENDS", "Backend", "Session", "get_backend"]
