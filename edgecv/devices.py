"""Device profiles: one YAML file per target in the repo's ``devices/`` folder (installed as ``edgecv.profiles``), validated
on load into a :class:`DeviceProfile`. A user adds a device by adding a file; a misspelt field is an error
that names its line.

A profile says what the device runs (``runtimes``, ``formats``), which precisions it accelerates, what its
accelerator accepts (formats, precisions, ops, dtypes, ranks, static shapes, partitions), its memory and
size budgets, the quantization it needs, and the preferred recipe. ``host: local`` marks a profile of the
machine edgecv runs on (benchmarks run here); other devices are benchmarked over SSH (``--remote``).

Example:
    >>> profile = load_profile("ci-x86-64-avx2")
    >>> profile.formats, profile.precisions["int8"].accelerated
    (('tflite', 'onnx', 'openvino'), False)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from edgecv.errors import ConfigError
from edgecv.formats import FORMATS, PRECISIONS
from edgecv.yamlfile import load_checked, names_in

# Tensor dtypes an accelerator may list (numpy-style names, as edgecv.compat reports them).
DTYPES = ("float32", "float16", "bfloat16", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "bool")


def _profile_dir() -> Path:
    # Installed as edgecv.profiles (the repo's devices/ folder), so a user's own devices/ can't shadow it.
    from importlib.resources import files

    return Path(str(files("edgecv.profiles")))


@dataclass(frozen=True)
class Cpu:
    """The CPU: cores (None where the profile covers a class of machines), instruction-set ``features`` it
    has and notable ones it ``lacks``, as Linux's /proc/cpuinfo spells them (avx2, avx512_vnni, asimd,
    asimddp...)."""

    cores: int | None = None
    features: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Runtime:
    """How one runtime runs there: LiteRT ``delegates`` (xnnpack, gpu, nnapi, edgetpu), ONNX Runtime
    ``providers`` (CPUExecutionProvider, CUDAExecutionProvider, TensorrtExecutionProvider...), OpenVINO
    ``devices`` (CPU, GPU, NPU)."""

    delegates: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Precision:
    """Whether the device runs this precision faster than fp32 (``accelerated``), and why or why not."""

    accelerated: bool
    note: str = ""


@dataclass(frozen=True)
class Accelerator:
    """What the accelerator accepts. ``ops`` lists, per artifact format, the op types it runs (empty: any;
    TFLite builtin names as the schema spells them, custom ops by their custom_code); an op outside the
    list, an activation tensor of a dtype outside ``dtypes``, of rank above ``max_rank``, or of a dynamic
    shape (with ``static_shapes``) does not run on it. With ``full_integer`` every tensor between
    the model's inputs and outputs must be integer. ``partitions``: how many accelerator segments the
    compiler makes (1: everything after the first op it cannot run goes to the CPU). ``fallback``: what
    happens to what it cannot run, ``cpu`` (runs, slower) or ``error`` (the model does not load)."""

    name: str
    formats: tuple[str, ...]
    precisions: tuple[str, ...]
    ops: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dtypes: tuple[str, ...] = ()
    max_rank: int | None = None
    static_shapes: bool = False
    full_integer: bool = False
    partitions: int | None = None
    fallback: str = "cpu"
    memory_mb: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Budgets:
    """Limits the artifact must fit: file size, memory the app may use at run time, and ``latency_ms``: the
    most one frame's inference may take there (``edgecv serve`` rolls back a model version over it, see
    ``swap.device``)."""

    model_mb: float | None = None
    memory_mb: float | None = None
    latency_ms: float | None = None


@dataclass(frozen=True)
class Quantization:
    """What quantization the device needs: ``required`` precision (None: any), weight ``scheme``
    (per-channel or per-tensor) and input/output type ``io`` (float, int8, uint8)."""

    required: str | None = None
    scheme: str = "per-channel"
    io: str = "float"
    note: str = ""


@dataclass(frozen=True)
class Recipe:
    """The preferred artifact: format, precision, and the steps that make it."""

    format: str
    precision: str
    steps: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class DeviceProfile:
    """One device (see the module docstring). ``examples``: concrete products it covers; ``note``: where its
    figures come from and which are approximate. ``path`` is the file it was read from."""

    name: str
    description: str
    arch: str
    runtimes: dict[str, Runtime]
    formats: tuple[str, ...]
    precisions: dict[str, Precision]
    preferred: Recipe
    cpu: Cpu | None = None
    memory_mb: int | None = None
    accelerator: Accelerator | None = None
    budgets: Budgets = Budgets()
    quantization: Quantization = Quantization()
    host: str | None = None
    examples: tuple[str, ...] = ()
    note: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def local(self) -> bool:
        """True for a profile of the machine edgecv runs on (``host: local``)."""
        return self.host == "local"

    def candidates(self) -> list[tuple[str, str]]:
        """(format, precision) pairs the device can run and edgecv writes, in the profile's order: what
        ``optimize`` builds (int4 is written for ONNX and OpenVINO, not TFLite)."""
        return [(f, p) for f in self.formats for p in self.precisions if p in FORMATS[f].precisions]


# -- loading ----------------------------------------------------------------------------------------------


def _check_values(p: DeviceProfile, at: str) -> None:
    from edgecv.backends import BACKENDS

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ConfigError(f"{at}: {what}")

    need(bool(p.formats) and all(f in FORMATS for f in p.formats),
         f"formats: expected some of {', '.join(FORMATS)}, got {list(p.formats)}")
    unknown = [r for r in p.runtimes if r not in BACKENDS]
    need(not unknown, f"runtimes: unknown {', '.join(unknown)}; valid runtimes: {', '.join(BACKENDS)}")
    bad = [q for q in p.precisions if q not in PRECISIONS]
    need(not bad and bool(p.precisions), f"precisions: expected some of {', '.join(PRECISIONS)}, got {list(p.precisions)}")
    need(p.preferred.format in p.formats, f"preferred.format {p.preferred.format!r} is not one of the profile's "
                                          f"formats ({', '.join(p.formats)})")
    need(p.preferred.precision in p.precisions, f"preferred.precision {p.preferred.precision!r} is not one of the "
                                                f"profile's precisions ({', '.join(p.precisions)})")
    q = p.quantization
    need(q.required is None or q.required in PRECISIONS, f"quantization.required: expected one of "
                                                         f"{', '.join(PRECISIONS)} or null, got {q.required!r}")
    need(q.scheme in ("per-channel", "per-tensor"), f"quantization.scheme: expected per-channel or per-tensor, "
                                                    f"got {q.scheme!r}")
    need(q.io in ("float", "int8", "uint8"), f"quantization.io: expected float, int8 or uint8, got {q.io!r}")
    need(p.host is None or isinstance(p.host, str), f"host: expected 'local', user@host or null, got {p.host!r}")
    need(p.cpu is None or p.cpu.cores is None or p.cpu.cores >= 1, f"cpu.cores: expected >= 1 or null, got "
                                                                   f"{p.cpu.cores if p.cpu else None}")
    for what, mb in (("memory_mb", p.memory_mb), ("budgets.model_mb", p.budgets.model_mb),
                     ("budgets.memory_mb", p.budgets.memory_mb), ("budgets.latency_ms", p.budgets.latency_ms)):
        need(mb is None or mb > 0, f"{what}: expected a positive number or null, got {mb}")
    a = p.accelerator
    if a is not None:
        need(all(f in FORMATS for f in a.formats), f"accelerator.formats: expected some of {', '.join(FORMATS)}")
        need(all(f in FORMATS for f in a.ops), f"accelerator.ops: keys must be formats ({', '.join(FORMATS)})")
        need(all(x in PRECISIONS for x in a.precisions), f"accelerator.precisions: expected some of "
                                                          f"{', '.join(PRECISIONS)}")
        need(a.fallback in ("cpu", "error"), f"accelerator.fallback: expected cpu or error, got {a.fallback!r}")
        need(a.max_rank is None or a.max_rank >= 1, f"accelerator.max_rank: expected >= 1, got {a.max_rank}")
        need(a.partitions is None or a.partitions >= 1, f"accelerator.partitions: expected >= 1, got {a.partitions}")
        stray = [f for f in a.ops if f not in a.formats]
        need(not stray, f"accelerator.ops: {', '.join(stray)} is not one of accelerator.formats ({', '.join(a.formats)})")
        odd = [d for d in a.dtypes if d not in DTYPES]
        need(not odd, f"accelerator.dtypes: unknown {', '.join(odd)}; expected some of {', '.join(DTYPES)}")
        need(a.memory_mb is None or a.memory_mb > 0, f"accelerator.memory_mb: expected a positive number, got {a.memory_mb}")


def profile_names(folder: Path | None = None) -> list[str]:
    """The names of the profiles in ``folder`` (default: the installed ``edgecv.profiles``)."""
    return names_in(folder or _profile_dir())


def load_profile(name_or_path: str | Path, folder: Path | None = None) -> DeviceProfile:
    """Load and validate a profile by name (a file in ``devices/``) or by path; every problem is a one-line
    :class:`~edgecv.errors.ConfigError` naming the file (and the line, for fields)."""
    folder = folder or _profile_dir()
    path = Path(name_or_path)
    if not path.suffix:
        path = folder / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown device {str(name_or_path)!r}; known devices: "
                              f"{', '.join(profile_names(folder)) or 'none'}")
    file = f"device profile {path}"
    profile = load_checked(path, DeviceProfile, kind="device profile", root="profile")
    profile = dataclasses.replace(profile, path=path)
    _check_values(profile, file)
    if path.parent == folder and profile.name != path.stem:
        raise ConfigError(f"{file}: name {profile.name!r} must match the file name {path.stem!r}")
    return profile


def load_profiles(folder: Path | None = None) -> list[DeviceProfile]:
    """Every profile in ``folder``, validated."""
    folder = folder or _profile_dir()
    return [load_profile(name, folder) for name in profile_names(folder)]
