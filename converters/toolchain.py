"""Versions of the packages that made an artifact, for its manifest."""

from __future__ import annotations

import platform

import edgecv
from edgecv.deps import version_of

TOOLCHAIN_PACKAGES = (
    "tensorflow",
    "keras",
    "tf-keras",
    "tf2onnx",
    "onnx",
    "onnxruntime",
    "openvino",
    "ai-edge-litert",
    "onnx2tf",
    "numpy",
)


def toolchain_versions() -> dict[str, str]:
    """``{"edgecv": "0.1.0", "python": "3.11.7", "tensorflow": "2.21.0", ...}`` for what is installed."""
    versions = {"edgecv": edgecv.__version__, "python": platform.python_version()}
    for dist in TOOLCHAIN_PACKAGES:
        v = version_of(dist)
        if v:
            versions[dist] = v
    return versions
