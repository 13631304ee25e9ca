"""Will this artifact run on that device? A static check of a model file against a device profile, on the
device side: no TensorFlow, no ``onnx`` package, no runtime.

:func:`read_graph` lists a model's ops (in execution order) and tensors from the file itself, through its
format's reader (:mod:`edgecv.formats`; the graph types are in :mod:`edgecv.graph`, re-exported here).
:func:`check_artifact` compares that graph with a :class:`~edgecv.devices.DeviceProfile`
and sorts what it finds into *blockers* (the device cannot run the file: wrong format, over budget, a float
model for an integer-only accelerator (float ops of a quantized model, such as a detector head kept in
float, are CPU fallbacks instead), a dynamic shape an accelerator must compile statically, an op the
accelerator must take and cannot) and *fallbacks* (it runs, slower: ops that go to the CPU, parameters that
do not fit the accelerator's memory).

Example:
    >>> from edgecv.devices import load_profile
    >>> report = check_artifact("face_detection_short_range.tflite", load_profile("coral-edgetpu"))  # doctest: +SKIP
    >>> report.ok, next(f.message for f in report.blockers if f.op == "CONV_2D")                  # doctest: +SKIP
    (False, "float op CONV_2D 'conv2d' on tensor 'input' float32: the Edge TPU runs full-integer models only")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgecv.formats import FORMATS, check_model_file, read_graph
from edgecv.graph import FLOATS, Graph, Op, Tensor

if TYPE_CHECKING:
    from edgecv.devices import DeviceProfile

__all__ = ["CompatReport", "Finding", "Graph", "Op", "Tensor", "check_artifact", "read_graph"]


# -- checking ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing the check found: ``kind`` (format, size, precision, float, dynamic, op, rank, dtype, memory,
    io, accelerator), the ``op`` type and ``name`` or the ``tensor`` it is about, and a one-line ``message``."""

    kind: str
    message: str
    op: str | None = None
    name: str | None = None
    tensor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "op": self.op, "name": self.name, "tensor": self.tensor}


@dataclass(frozen=True)
class CompatReport:
    """What :func:`check_artifact` found. ``ok``: no blockers (the device can run the file, maybe with
    fallbacks). ``accelerator_ops``: how many ops the accelerator would run (None without an accelerator)."""

    artifact: Path
    device: str
    format: str
    precision: str
    size_bytes: int
    ops: int
    blockers: tuple[Finding, ...] = ()
    fallbacks: tuple[Finding, ...] = ()
    accelerator: str | None = None
    accelerator_ops: int | None = None
    op_types: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.blockers

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": str(self.artifact), "device": self.device, "ok": self.ok, "format": self.format,
                "precision": self.precision, "size_bytes": self.size_bytes, "ops": self.ops,
                "accelerator": self.accelerator, "accelerator_ops": self.accelerator_ops,
                "op_types": dict(self.op_types),
                "blockers": [f.to_dict() for f in self.blockers],
                "fallbacks": [f.to_dict() for f in self.fallbacks]}


# Ops that only carry constants or mark the graph's ends: never placed on a device.
_STRUCTURAL = {"Parameter", "Result", "Const", "Constant"}


def _cpu_path(profile: DeviceProfile, fmt: str) -> bool:
    """Can one of the profile's runtimes for ``fmt`` run it on the CPU (where an accelerator's leftovers go)?"""
    from edgecv.backends import BACKENDS

    rt = profile.runtimes
    return any(BACKENDS[b].runs_on_cpu(rt[b]) for b in FORMATS[fmt].backends if b in rt)


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def check_artifact(path: str | Path, profile: DeviceProfile) -> CompatReport:
    """Check the model file at ``path`` against ``profile``: format, size budget, required quantization, and
    what the profile's accelerator takes (op list, integer-only, dtypes, rank, static shapes, partitions,
    on-chip memory). See the module docstring for blockers vs fallbacks.

    Example:
        >>> from edgecv.devices import load_profile
        >>> r = check_artifact("model.int8.tflite", load_profile("coral-edgetpu"))   # doctest: +SKIP
        >>> r.ok, [f.message for f in r.fallbacks]                                  # doctest: +SKIP
        (True, [])
    """
    path = Path(path)
    fmt = check_model_file(path)
    size = sum(p.stat().st_size for p in fmt.files(path) if p.is_file())
    blockers: list[Finding] = []
    fallbacks: list[Finding] = []
    model_mb = profile.budgets.model_mb
    if model_mb is not None and size > model_mb * 1e6:
        blockers.append(Finding("size", f"the file is {_mb(size)}, over {profile.name}'s budget of {model_mb:g} MB "
                                        f"(budgets.model_mb)"))
    if fmt.name not in profile.formats:
        blockers.append(Finding("format", f"format {fmt.name}: {profile.name} runs {', '.join(profile.formats)} "
                                          f"only ({', '.join(FORMATS[f].suffix for f in profile.formats)})"))
        return CompatReport(path, profile.name, fmt.name, "unknown", size, 0, tuple(blockers), (),
                            profile.accelerator.name if profile.accelerator else None)
    graph = fmt.read_graph(path)
    acc = profile.accelerator
    acc_ops = _check_accelerator(graph, profile, blockers, fallbacks) if acc and fmt.name in acc.formats else None
    if acc and fmt.name not in acc.formats:
        fallbacks.append(Finding("accelerator", f"the {acc.name} does not run {fmt.name} files "
                                                f"(it takes {', '.join(acc.formats)}): the whole model runs on the CPU"))
    required = profile.quantization.required
    precision = graph.precision
    # A quantized model with float ops the accelerator leaves to the CPU (kind "float" fallbacks) is "mixed"
    # and still compiles: its float ops are already reported.
    mixed_ok = precision == "mixed" and any(f.kind == "float" for f in fallbacks)
    if required and precision != required and not mixed_ok and not any(f.kind == "float" for f in blockers):
        blockers.append(Finding("precision", f"{profile.name} needs {required} models (quantization.required); "
                                             f"this one is {precision}"))
    return CompatReport(path, profile.name, fmt.name, precision, size, len(graph.ops), tuple(blockers),
                        tuple(fallbacks), acc.name if acc else None, acc_ops, dict(graph.op_types()))


def _check_accelerator(graph: Graph, profile: DeviceProfile, blockers: list[Finding], fallbacks: list[Finding]) -> int:
    """Add the accelerator's findings; return how many ops it would run."""
    acc = profile.accelerator
    assert acc is not None
    soft = acc.fallback == "cpu" and _cpu_path(profile, graph.format)
    T = graph.tensors
    if acc.static_shapes:  # a compiler of static shapes refuses a dynamic input outright
        for name in graph.inputs:
            if T[name].dynamic:
                blockers.append(Finding("dynamic", f"dynamic shape on input {name!r} {T[name].shape_text()}: the "
                                                   f"{acc.name} compiles static shapes only; fix the shape at export",
                                        tensor=name))
    float_blocked, boundary, float_tail = (_full_integer(graph, profile, blockers, fallbacks) if acc.full_integer
                                           else (set(), set(), {}))
    reasons = _reasons(graph, profile, skip=float_blocked | boundary)
    for i, why in float_tail.items():
        reasons.setdefault(i, []).insert(0, why)
    reasons = dict(sorted(reasons.items()))
    compute = [i for i, op in enumerate(graph.ops) if op.type not in _STRUCTURAL and i not in boundary]
    cut = _partition_cut(compute, reasons, acc.partitions)
    after = len([i for i in compute if i > cut]) if cut is not None else 0
    for i, why in reasons.items():
        op = graph.ops[i]
        kind, text, tensor = why[0]
        extra = f" (and {len(why) - 1} more reason{'s' * (len(why) > 2)})" if len(why) > 1 else ""
        if not soft:
            tail = f"the model does not compile for the {acc.name}"
        elif i == cut and after:
            tail = (f"it and the {after} op{'s' * (after != 1)} after it run on the CPU "
                    f"({_spell(acc.partitions)} partition{'s' * (acc.partitions != 1)})")
        elif i == cut:
            tail = "it runs on the CPU (the last op)"
        else:
            tail = "runs on the CPU"
        (fallbacks if soft else blockers).append(Finding(kind, f"{text}{extra}: {tail}", op.type, op.name, tensor))
    on_acc = [i for i in compute if i not in reasons and i not in float_blocked and (cut is None or i < cut)]
    if acc.memory_mb is not None:
        consts = {n for i in on_acc for n in graph.ops[i].inputs if T[n].constant}
        params = sum(T[n].nbytes for n in consts)
        if params > acc.memory_mb * 1e6:
            fallbacks.append(Finding("memory", f"the parameters of the ops on the {acc.name} take {_mb(params)}, more "
                                               f"than its ~{acc.memory_mb:g} MB on-chip memory: the rest stream from "
                                               f"host memory on every run (slower)"))
    return 0 if float_blocked else len(on_acc)


def _full_integer(graph: Graph, profile: DeviceProfile, blockers: list[Finding],
                  fallbacks: list[Finding]) -> tuple[set[int], set[int], dict[int, tuple[str, str, str | None]]]:
    """Float ops of an integer-only accelerator, and the float/integer conversions at the model's ends.
    Returns the indices of the float ops that block, of the conversions, and the float ops that run on the CPU.

    A float op blocks only in a model with no integer compute at all. In a quantized model the compiler
    leaves float ops to the CPU ("Operation is working on an unsupported data type" in the Edge TPU
    compiler's log: a detector head kept in float after a DEQUANTIZE), so those are CPU reasons, cut by the
    accelerator's partition limit like any op it cannot take."""
    acc, T = profile.accelerator, graph.tensors
    assert acc is not None
    ends = set(graph.inputs) | set(graph.outputs)
    # A float model input's QUANTIZE and a float output's DEQUANTIZE are host work at the model's ends:
    # they run on the CPU without cutting the accelerator's partition.
    boundary = {
        i for i, op in enumerate(graph.ops)
        if (op.type in ("QUANTIZE", "QuantizeLinear") and op.inputs and op.inputs[0] in graph.inputs
            and T[op.inputs[0]].dtype in FLOATS)
        or (op.type in ("DEQUANTIZE", "DequantizeLinear") and op.outputs and op.outputs[0] in graph.outputs
            and op.inputs and not T[op.inputs[0]].constant)
    }
    floats: dict[int, Tensor] = {}
    integer = False  # an op computing on integer tensors only
    for i, op in enumerate(graph.ops):
        if op.type in _STRUCTURAL or i in boundary:
            continue
        bad = [T[n] for n in op.inputs + op.outputs if n not in ends and T[n].dtype in FLOATS]
        if bad:
            floats_in = [T[n] for n in op.inputs if T[n].dtype in FLOATS]
            floats[i] = next((x for x in floats_in if not x.constant), floats_in[0] if floats_in else bad[0])
        elif not any(T[n].dtype in FLOATS for n in op.inputs + op.outputs if not T[n].constant):
            integer = True
    blocked: set[int] = set()
    tail: dict[int, tuple[str, str, str | None]] = {}
    for i, t in floats.items():
        op = graph.ops[i]
        text = f"float op {op.type} {op.name!r} on tensor {t.name!r} {t.dtype}"
        if integer and acc.fallback == "cpu":
            tail[i] = ("float", f"{text}: the {acc.name} takes integer ops only", t.name)
        else:
            blocked.add(i)
            blockers.append(Finding("float", f"{text}: the {acc.name} runs full-integer models only", op.type, op.name, t.name))
    io = profile.quantization.io
    for i in sorted(boundary) if not blocked else ():
        op = graph.ops[i]
        if op.type.startswith("Q"):
            name, side, what = op.inputs[0], "input", f"its {op.type} to {T[op.outputs[0]].dtype}"
        else:
            name, side, what = op.outputs[0], "output", f"the {op.type} to it"
        prefer = f" ({profile.name} takes {io} I/O: export with {io} inputs and outputs to skip it)" if io != "float" else ""
        fallbacks.append(Finding("io", f"{side} {name!r} is {T[name].dtype}: {what} runs on the CPU{prefer}",
                                 op.type, op.name, name))
    return blocked, boundary, tail


def _reasons(graph: Graph, profile: DeviceProfile, *, skip: set[int]) -> dict[int, list[tuple[str, str, str | None]]]:
    """Per op the accelerator cannot take: (kind, why, tensor) for each reason."""
    acc, T = profile.accelerator, graph.tensors
    assert acc is not None
    ends = set(graph.inputs) | set(graph.outputs)
    allowed = set(acc.ops.get(graph.format, ()))
    # With static inputs, a dynamic tensor inside comes from a data-dependent op; with dynamic inputs, every
    # tensor downstream is dynamic too and the input's blocker says it all.
    follow_dynamic = acc.static_shapes and not any(T[n].dynamic for n in graph.inputs)
    reasons: dict[int, list[tuple[str, str, str | None]]] = {}
    for i, op in enumerate(graph.ops):
        if op.type in _STRUCTURAL or i in skip:
            continue
        why: list[tuple[str, str, str | None]] = []
        if allowed and op.type not in allowed:
            why.append(("op", f"{'custom op' if op.custom else 'op'} {op.type} {op.name!r} is not in the "
                              f"{acc.name}'s op list", None))
        for n in dict.fromkeys(op.inputs + op.outputs):
            t = T[n]
            if t.constant:
                continue
            where = f"tensor {n!r} of {op.type} {op.name!r}"
            if acc.max_rank is not None and t.rank is not None and t.rank > acc.max_rank:
                why.append(("rank", f"{where} has rank {t.rank} {t.shape_text()}, the {acc.name} takes at most "
                                    f"{acc.max_rank - 1} dimensions besides batch", n))
            if acc.dtypes and t.dtype and t.dtype not in acc.dtypes and not (acc.full_integer and t.dtype in FLOATS):
                why.append(("dtype", f"{where} is {t.dtype}, the {acc.name} takes {', '.join(acc.dtypes)}", n))
            if follow_dynamic and t.dynamic and n not in ends and t.shape is not None:
                why.append(("dynamic", f"{where} has a dynamic shape {t.shape_text()}, the {acc.name} takes static "
                                       f"shapes only", n))
        if why:
            reasons[i] = why
    return reasons


def _partition_cut(compute: list[int], reasons: dict[int, list], partitions: int | None) -> int | None:
    """The op from which everything runs on the CPU because the compiler makes at most ``partitions``
    accelerator segments: the start of the ``partitions``-th run of ops it cannot take (1: the first such op).
    None without such a limit, or when there is no such op."""
    if partitions is None:
        return None
    runs, prev_bad = 0, False
    for i in compute:
        bad = i in reasons
        if bad and not prev_bad:
            runs += 1
            if runs == partitions:
                return i
        prev_bad = bad
    return None


def _spell(n: int | None) -> str:
    return {1: "one", 2: "two", 3: "three"}.get(n or 0, str(n))
