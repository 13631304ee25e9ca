"""The JSON manifest written beside every artifact: what it is, how to feed it, where it came from, how
well it matched its source.

The manifest of ``out/model.fp32.onnx`` is ``out/model.fp32.onnx.json``.

Example:
    >>> m = Manifest(format="onnx", precision="fp32")
    >>> Manifest.from_dict(m.to_dict()) == m
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgecv.errors import ManifestError

SCHEMA = "edgecv.manifest/1"
COLOR_ORDERS = ("RGB", "BGR", "GRAY")


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input: ``input = (pixel - mean) / std`` with pixels in 0..255.

    Common cases: [0, 1] is mean 0, std 255; [-1, 1] is mean 127.5, std 127.5; raw pixels are mean 0, std 1.
    """

    layout: str = "NHWC"
    color: str = "RGB"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (255.0,)

    def __post_init__(self) -> None:
        if self.color not in COLOR_ORDERS:
            raise ManifestError(f"preprocess color: expected one of {', '.join(COLOR_ORDERS)}, got {self.color!r}")
        if any(s == 0 for s in self.std):
            raise ManifestError(f"preprocess std: expected non-zero values, got {list(self.std)}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def input_range(self) -> tuple[float, float]:
        """The model-input range that pixels 0..255 map to (first channel)."""
        lo = (0.0 - self.mean[0]) / self.std[0]
        hi = (255.0 - self.mean[0]) / self.std[0]
        return (min(lo, hi), max(lo, hi))


@dataclass
class Manifest:
    """Self-description of one artifact. Unknown keys in a file are kept in ``extra``."""

    format: str
    precision: str
    artifact: str = ""
    quantization: dict[str, Any] | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    preprocess: Preprocess = field(default_factory=Preprocess)
    labels: list[str] | None = None
    source: dict[str, Any] = field(default_factory=dict)
    toolchain: dict[str, str] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    # SHA-256 of every file of the artifact (the artifact and its companions), by file name in its folder.
    files: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"schema": SCHEMA}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            d[f.name] = asdict(value) if isinstance(value, Preprocess) else value
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if not isinstance(d, dict):
            raise ManifestError(f"manifest: expected a JSON object, got {type(d).__name__}")
        schema = d.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise ManifestError(f"manifest schema: expected {SCHEMA!r}, got {schema!r}")
        for key in ("format", "precision"):
            if key not in d:
                raise ManifestError(f"manifest: missing required key {key!r}")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known and k != "extra"}
        pre = kwargs.get("preprocess") or {}
        try:
            kwargs["preprocess"] = Preprocess(**pre)
        except TypeError as exc:
            raise ManifestError(f"manifest preprocess: {exc}") from None
        extra = {k: v for k, v in d.items() if k not in known and k != "schema"}
        return cls(**kwargs, extra=extra)

    def write(self, path: str | Path) -> Path:
        """Write atomically to ``path`` (a temporary file, then a rename)."""
        from edgecv.fileio import atomic_write_text

        if not self.created:
            self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(f"manifest not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"manifest {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def digest_files(paths: list[Path]) -> dict[str, str]:
    """``{file name: SHA-256}`` of ``paths`` (the files of one artifact), for :attr:`Manifest.files`."""
    from edgecv.fileio import sha256_of

    return {Path(p).name: sha256_of(p) for p in paths}


def manifest_path(artifact: str | Path) -> Path:
    """Where the manifest of ``artifact`` lives: the artifact's file name plus ``.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def find_manifest(artifact: str | Path) -> Manifest | None:
    """The manifest beside ``artifact``, or None when there is none."""
    path = manifest_path(artifact)
    return Manifest.read(path) if path.is_file() else None


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
