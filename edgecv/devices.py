"""Device profiles: YAML files in the repository's ``devices/`` folder, validated on load.

Example:
    >>> profile = load_profile("ci-x86-64-avx2")     # doctest: +SKIP
    >>> profile.formats                                # doctest: +SKIP
    ('tflite', 'onnx', 'openvino')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecv.errors import ConfigError
from edgecv.formats import FORMATS
from edgecv.yamlfile import names_in, read_named_yaml

PROFILE_DIR = Path(__file__).resolve().parents[1] / "devices"
_REQUIRED = ("name", "description", "arch", "runtimes", "formats", "precisions")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    arch: str
    runtimes: dict[str, Any]
    formats: tuple[str, ...]
    precisions: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def profile_names(folder: Path = PROFILE_DIR) -> list[str]:
    return names_in(folder)


def load_profile(name_or_path: str | Path, folder: Path = PROFILE_DIR) -> DeviceProfile:
    """Load and validate a profile by name (a file in ``devices/``) or by path."""
    path, data = read_named_yaml(name_or_path, folder=folder, kind="device profile", listing="known devices")
    if not isinstance(data, dict):
        raise ConfigError(f"device profile {path}: expected a mapping, got {type(data).__name__}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"device profile {path}: missing key(s) {', '.join(missing)}")
    from edgecv.backends import BACKENDS

    unknown_rt = [r for r in data["runtimes"] if r not in BACKENDS]
    if unknown_rt:
        raise ConfigError(f"device profile {path}: unknown runtime(s) {unknown_rt}; expected some of {list(BACKENDS)}")
    unknown_fmt = [f for f in data["formats"] if f not in FORMATS]
    if unknown_fmt:
        raise ConfigError(f"device profile {path}: unknown format(s) {unknown_fmt}; expected some of {list(FORMATS)}")
    return DeviceProfile(
        name=str(data["name"]),
        description=str(data["description"]),
        arch=str(data["arch"]),
        runtimes=dict(data["runtimes"]),
        formats=tuple(data["formats"]),
        precisions=dict(data["precisions"]),
        raw=data,
    )
