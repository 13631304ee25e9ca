"""Import optional dependencies on demand, with an error that says what to install.

Example:
    >>> ort = require("onnxruntime", extra="onnxruntime", purpose="run .onnx files")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from edgecv.errors import MissingDependencyError


def require(module: str, *, extra: str, purpose: str = "", package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``pip install 'edgecv[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Only a missing top-level package means "not installed"; any other ImportError is a real bug.
        missing = getattr(exc, "name", None) or ""
        if missing and not module.startswith(missing.split(".")[0]):
            raise
        raise MissingDependencyError(package or module.split(".")[0], extra, purpose) from exc


def optional(module: str) -> ModuleType | None:
    """``module`` imported, or None where it is not installed (for work that has a way without it)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def is_installed(module: str) -> bool:
    """True when ``module`` can be found, without importing it."""
    return importlib.util.find_spec(module) is not None


def version_of(distribution: str) -> str | None:
    """The installed version of a distribution, or None."""
    from importlib import metadata  # ~20 ms to import; only needed for manifests and reports

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
