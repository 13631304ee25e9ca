"""The small interface every runtime backend implements.

A backend opens an artifact into a :class:`Session`; a session describes its tensors and runs lists of
arrays. Validation, float I/O and batching live once in :class:`edgecv.model.Model`, not in backends.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from edgecv.deps import is_installed
from edgecv.formats import FORMATS
from edgecv.tensors import TensorInfo


class Session(ABC):
    """An opened artifact. ``inputs``/``outputs`` are set by the constructor."""

    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    raw: Any  # the runtime's own object, for expert use
    resizes: bool = False  # True when prepare() must see every new input shape
    # The exception types the runtime raises from run() and prepare(); Model turns them into BackendError.
    failures: tuple[type[BaseException], ...] = (RuntimeError, ValueError)

    @abstractmethod
    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Run on arrays already checked for count, shape and dtype; return outputs in order."""

    def message(self, exc: BaseException) -> str:
        """One readable line of the runtime's error ``exc`` (one of :attr:`failures`)."""
        return first_line(exc)

    def prepare(self, shapes: list[tuple[int, ...]]) -> None:
        """Get ready for inputs of these shapes (runtimes that must resize do it here)."""


class RuntimeSettings(Protocol):
    """How a device profile runs a runtime (:class:`edgecv.devices.Runtime`): LiteRT delegates, ONNX Runtime
    execution providers, OpenVINO devices (each empty when the profile does not say)."""

    delegates: tuple[str, ...]
    providers: tuple[str, ...]
    devices: tuple[str, ...]


class Backend(ABC):
    """A runtime that opens artifacts of some formats (those whose ``backends`` in
    :data:`edgecv.formats.FORMATS` name it)."""

    name: ClassVar[str]
    extra: ClassVar[str]  # pip extra that installs it
    modules: ClassVar[tuple[str, ...]]  # import names, any of which makes the backend available

    @property
    def formats(self) -> tuple[str, ...]:
        """The formats it runs, read from the formats table."""
        return tuple(f.name for f in FORMATS.values() if self.name in f.backends)

    def available(self) -> bool:
        return any(is_installed(m) for m in self.modules)

    @abstractmethod
    def runs_on_cpu(self, settings: RuntimeSettings) -> bool:
        """Whether a device running it with ``settings`` runs models on the CPU (where an accelerator's
        leftovers go)."""

    @abstractmethod
    def import_runtime(self) -> Any:
        """Import the runtime module (or raise the missing-dependency error); returns it."""

    @abstractmethod
    def open(self, path: Path, *, threads: int | None, shared_cores: bool = False) -> Session:
        """Open ``path``. Runtime failures become :class:`edgecv.errors.ModelFileError`. ``shared_cores``: other
        work shares the cores (a pipeline's other stages, other streams), so the runtime's threads sleep
        between calls where it lets them choose, instead of spinning."""

    @abstractmethod
    def version(self) -> str | None:
        """Version of the runtime package that would be used."""


def default_threads(threads: int | None) -> int:
    """``None`` means every core this process may use (its CPU affinity), the same for every backend, so
    results compare fairly."""
    if threads is None:
        from edgecv.machine import usable_cores

        return usable_cores()
    return max(1, int(threads))


def first_line(exc: BaseException) -> str:
    """A runtime's often multi-line message, cut to its first meaningful line."""
    for line in str(exc).splitlines():
        line = line.strip()
        # OpenVINO starts with "Exception from src/...cpp:84:", which says where, not what.
        if line and not (line.startswith("Exception from ") and line.endswith(":")):
            return line if len(line) <= 300 else line[:300].rsplit(" ", 1)[0] + " ..."
    return type(exc).__name__
