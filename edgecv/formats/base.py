"""The interface every artifact format implements: what a format is (suffix, companion file, the backends that
run it, the precisions edgecv writes in it, its workstation export target) and what it does on the device
side (a cheap structural check, a graph reader).

Example:
    >>> from edgecv.formats import FORMATS
    >>> fmt = FORMATS["openvino"]
    >>> fmt.suffix, fmt.companion, [p.name for p in fmt.files(Path("m.xml"))]
    ('.xml', '.bin', ['m.xml', 'm.bin'])
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from edgecv.graph import Graph, WeightOps

# What every concrete format must set (the rest have defaults).
_REQUIRED = ("name", "suffix", "backends", "precisions", "target", "weight_ops")


class ArtifactFormat(ABC):
    """One artifact format. A new format is a subclass in its own module under :mod:`edgecv.formats` plus one
    row in :data:`edgecv.formats.FORMATS`.

    ``backends``: runtimes that run it, preferred first (names of :data:`edgecv.backends.BACKENDS`).
    ``precisions``: what edgecv writes in it, in order. ``target``: the module of its workstation-side export
    target, by name (only :mod:`edgecv.converters` imports it, so the device side never does).
    ``weight_ops``: its ops with weights, for reading the precision from the graph. ``companion``: a second
    file that belongs to the artifact (OpenVINO's ``.bin``). ``isolate``: load it in a child process first,
    as its runtime can crash on corrupted files that pass the cheap check. ``cannot_write``: precisions other
    formats are written in that this one cannot be, each with the one-line reason export gives.
    """

    name: ClassVar[str]
    suffix: ClassVar[str]
    backends: ClassVar[tuple[str, ...]]
    precisions: ClassVar[tuple[str, ...]]
    target: ClassVar[str]
    weight_ops: ClassVar[WeightOps]
    companion: ClassVar[str | None] = None
    isolate: ClassVar[bool] = False
    cannot_write: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls):
            missing = [a for a in _REQUIRED if not hasattr(cls, a)]
            if missing:
                raise TypeError(f"format {cls.__name__} does not set {', '.join(missing)}")

    @abstractmethod
    def check(self, path: Path) -> None:
        """Raise a one-line :class:`~edgecv.errors.ModelFileError` when ``path`` (an existing, non-empty file)
        is not structurally a file of this format; cheap, no runtime."""

    @abstractmethod
    def read_graph(self, path: Path) -> Graph:
        """The ops (in execution order) and tensors of the checked file at ``path``, from the file alone."""

    def files(self, path: Path) -> list[Path]:
        """Every file that makes up the artifact at ``path``."""
        return [path] + ([path.with_suffix(self.companion)] if self.companion else [])

    def __repr__(self) -> str:
        return f"<format {self.name} ({self.suffix})>"
