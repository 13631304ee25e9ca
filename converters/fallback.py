"""Automatic float fallback: when an int8 artifact fails the accuracy gate, find the layers whose
quantization causes the loss and rebuild with as few of them as possible kept in float.

1. Rank the quantized layers, in the target format's own naming, by one of:
   - ``error``: each layer's output SQNR against float on eval samples, from the format's own tools;
   - ``clipping``: first the layers that make the model's outputs where the format quantizes those
     (ONNX), then the layers whose eval activations, clipped to their range on the calibration set, lose
     the most signal (clip SQNR below 30 dB, worst first): calibrated on data unlike the eval set, their
     quantizers clip exactly the values that matter (a face's activations, when the calibration frames
     had no faces). Then the rest by ``error``. It needs an eval set apart from the calibration set;
   - ``auto`` (the default): ``clipping`` when there is such an eval set, else ``error``;
   - ``leave-one-out``: the gain in accuracy (or output SQNR) when only that layer is kept in float,
     over the first layers of the ``auto`` ranking.
2. Grow a prefix of the ranking (1, 2, 4, 8 ... layers) until the artifact passes, narrow it by
   bisection, then drop any kept layer the artifact passes without.
3. Measure what each kept layer costs: size and latency p50 of each prefix against plain int8, and the
   artifact's p50 against the same format in fp32: an int8 artifact whose float layers make it slower than
   fp32 is no useful int8 model, and fails (:func:`no_useful_int8`).

The float fallback is the last resort: :mod:`edgecv.converters.ladder` first tries the toolchain's other
PTQ settings, and the fallback starts from the best of them.

Example:
    >>> _goodness(Verdict(True, 0.4), Scores(samples=10, sqnr_db=30.0))
    -0.4
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from edgecv.converters.build import Built, ExportContext, build, p50
from edgecv.converters.metrics import Scores, Verdict
from edgecv.converters.targets import ExportTarget, LayerError, artifact_name
from edgecv.fileio import file_size

log = logging.getLogger(__name__)

LEAVE_ONE_OUT_CANDIDATES = 12


def keep_layers_in_float(ctx: ExportContext, target: ExportTarget, precision: str, plain: Built) -> tuple[Built, dict[str, Any]]:
    """Search for the fewest float layers that make the artifact pass. Returns the best build and a
    report dict (ranking, layers kept, attempts, costs). When nothing within the cap passes, the best
    attempt is returned with its failing verdict."""
    options = ctx.options.quant
    start = time.perf_counter()
    errors = target.layer_errors(ctx.source, precision, plain.path, ctx.work, ctx.quant, input_shape=ctx.plan.fixed_for(target))
    attempts: dict[tuple[str, ...], Built] = {(): plain}
    counter = iter(range(1, 10_000))

    def attempt(names: tuple[str, ...]) -> Built:
        if names not in attempts:
            staging = ctx.work / f"{target.name}-{precision}-fallback-{next(counter)}"
            attempts[names] = build(ctx, target, precision, staging, keep_float=names)
            log.info("%s %s with %d float layers: %s", target.name, precision, len(names), attempts[names].verdict.reason or "passes")
        return attempts[names]

    method = options.fallback_ranking
    ranking = rank(errors, method)
    if method == "leave-one-out":
        candidates = ranking[:LEAVE_ONE_OUT_CANDIDATES]
        gain = {n: _goodness(attempt((n,)).verdict, attempt((n,)).scores) for n in candidates}
        ranking = sorted(candidates, key=lambda n: -gain[n]) + ranking[LEAVE_ONE_OUT_CANDIDATES:]
    ranking = ranking[: options.max_float_layers]

    kept = _smallest_passing_prefix(ranking, attempt)
    if kept is None:
        best = max(attempts.values(), key=lambda b: _goodness(b.verdict, b.scores))
        kept = next(k for k, b in attempts.items() if b is best)
    else:
        kept = _prune(kept, attempt)
    final = attempts[kept]
    by_name = {e.name: e for e in errors}
    info = {
        "ranking_method": method,
        "ranking": [by_name[n].to_dict() for n in ranking[:20]],
        "kept": list(kept),
        "why": [by_name[n].to_dict() for n in kept if n in by_name],
        "passed": final.verdict.passed,
        "attempts": [{"float_layers": len(k), "passed": b.verdict.passed, "drop": b.verdict.drop, "sqnr_db": b.scores.sqnr_db}
                     for k, b in attempts.items()],
    }
    info["costs"], info["int8_p50_ms"], info["p50_ms"] = _costs(ctx, target, plain, kept, attempt)
    info["seconds"] = round(time.perf_counter() - start, 1)
    return final, info


# Timing noise: an artifact is slower than fp32 when its p50 is more than this share and this many ms above it.
SLOWER_SHARE, SLOWER_MS = 0.10, 0.02


def no_useful_int8(what: str, p50_ms: float | None, fp32_p50_ms: float | None, int8_p50_ms: float | None = None) -> str | None:
    """Why an int8 artifact kept partly in float is no useful int8 model (it runs slower than fp32, beyond
    timing noise), or None. ``int8_p50_ms`` (plain int8, no float layers) says whether the float layers are to blame.

    Example:
        >>> no_useful_int8("8 layers in float", 10.3, 0.7)
        'no useful int8 model: with 8 layers in float it runs at 10.3 ms, slower than fp32 (0.7 ms)'
        >>> no_useful_int8("8 layers in float", 0.5, 0.7) is None, no_useful_int8("1 layer in float", 0.0153, 0.014) is None
        (True, True)
    """
    if p50_ms is None or fp32_p50_ms is None or p50_ms - fp32_p50_ms <= max(SLOWER_SHARE * fp32_p50_ms, SLOWER_MS):
        return None
    why = f"no useful int8 model: with {what} it runs at {p50_ms:.3g} ms, slower than fp32 ({fp32_p50_ms:.3g} ms)"
    return why + (f"; without them int8 runs at {int8_p50_ms:.3g} ms" if int8_p50_ms is not None else "")


def fp32_p50(ctx: ExportContext, target: ExportTarget) -> float | None:
    """Latency p50 of the source in ``target``'s format at fp32 (converted into the work folder, as
    :func:`edgecv.converters.build.p50` times artifacts); None when the export skips timing."""
    if ctx.options.bench_runs <= 0:
        return None
    staging = ctx.work / f"{target.name}-fp32-latency"
    path = staging / artifact_name(ctx.stem, target, "fp32")
    if not path.is_file():
        staging.mkdir(parents=True, exist_ok=True)
        target.convert(ctx.source, "fp32", path, ctx.work, None, static_batch=ctx.options.static_batch,
                       input_shape=ctx.plan.fixed_for(target))
    return p50(path, ctx, target)[0]


def check_against_fp32(ctx: ExportContext, target: ExportTarget, built: Built, what: str, info: dict[str, Any]) -> Built:
    """``built`` (passing, with float layers), failed when it runs slower than the format's fp32; records
    ``p50_ms``, ``fp32_p50_ms`` and ``useful`` in ``info``."""
    ms = info.get("p50_ms")
    if ms is None and ctx.options.bench_runs > 0:
        ms = info["p50_ms"] = p50(built.path, ctx, target)[0]
    try:
        fp32 = fp32_p50(ctx, target)
    except Exception as exc:  # no fp32 figure to compare with: the artifact stands, the report says why
        log.warning("%s fp32 could not be timed to compare with int8: %s", target.name, exc)
        fp32 = None
    info["fp32_p50_ms"] = fp32
    why = no_useful_int8(what, ms, fp32, info.get("int8_p50_ms"))
    info["useful"] = why is None if fp32 is not None and ms is not None else None
    if why is None:
        return built
    log.warning("%s: %s", target.name, why)
    return Built(built.path, built.scores, Verdict(False, built.verdict.drop, why))


CLIP_SUSPECT_DB = 30.0  # clipping that leaves less signal than this ranks a layer by clipping, not error


def rank(errors: list[LayerError], method: str) -> list[str]:
    """Layer names, most suspect first. ``errors`` are :class:`LayerError` rows (``clip_db`` is None
    when there was no eval set apart from the calibration set).

    Example:
        >>> from edgecv.converters.targets import LayerError as E
        >>> rows = [E("a", "Conv", 12.0, 1.0, 100.0), E("b", "Conv", 30.0, 6.7, 8.0), E("c", "Conv", 20.0, 1.2, 40.0),
        ...         E("head", "Conv", 35.0, 1.1, 60.0, head=True)]
        >>> rank(rows, "error"), rank(rows, "clipping")
        (['a', 'c', 'b', 'head'], ['head', 'b', 'a', 'c'])
    """
    by_error = [e.name for e in sorted(errors, key=lambda e: e.sqnr_db)]
    if method == "error" or not any(e.clip_db is not None for e in errors):
        return by_error
    heads = [e.name for e in sorted((e for e in errors if e.head), key=lambda e: e.sqnr_db)]
    clipped = sorted((e for e in errors if not e.head and e.clip_db is not None and e.clip_db < CLIP_SUSPECT_DB),
                     key=lambda e: (e.clip_db, e.sqnr_db))
    first = heads + [e.name for e in clipped]
    return first + [n for n in by_error if n not in first]


def _goodness(verdict: Verdict, scores: Scores) -> float:
    """Higher is better: minus the top-1 drop for classifiers, else the output SQNR."""
    if verdict.drop is not None:
        return -verdict.drop
    return scores.sqnr_db if scores.sqnr_db is not None else float("-inf")


def _smallest_passing_prefix(ranking: list[str], attempt: Callable[[tuple[str, ...]], Built]) -> tuple[str, ...] | None:
    failing, passing = 0, None
    k = 1
    while k <= len(ranking):
        if attempt(tuple(ranking[:k])).verdict.passed:
            passing = k
            break
        failing = k
        k = len(ranking) if k * 2 > len(ranking) and k < len(ranking) else k * 2
    if passing is None:
        return None
    while passing - failing > 1:  # bisection, assuming more float layers never hurt
        mid = (passing + failing) // 2
        if attempt(tuple(ranking[:mid])).verdict.passed:
            passing = mid
        else:
            failing = mid
    return tuple(ranking[:passing])


def _prune(kept: tuple[str, ...], attempt: Callable[[tuple[str, ...]], Built]) -> tuple[str, ...]:
    """Drop kept layers the artifact passes without, least-suspect first (small sets only)."""
    if len(kept) > 8:
        return kept
    for name in reversed(kept):
        trial = tuple(n for n in kept if n != name)
        if trial and attempt(trial).verdict.passed:
            kept = trial
    return kept


def _costs(ctx: ExportContext, target: ExportTarget, plain: Built, kept: tuple[str, ...],
           attempt: Callable[[tuple[str, ...]], Built]) -> tuple[list[dict[str, Any]], float | None, float | None]:
    """Size and latency of each prefix of ``kept`` against plain int8: what each float layer adds
    (latency measured as ``edgecv bench`` measures it, see :func:`edgecv.converters.build.p50`); and the
    p50 of plain int8 and of the build with every kept layer."""

    def latency(path) -> float | None:
        return p50(path, ctx, target)[0]

    rows = []
    prev_size, prev_p50 = file_size(plain.path), latency(plain.path)
    ms = prev_p50
    base_size, base_p50 = prev_size, prev_p50
    for i, name in enumerate(kept if len(kept) <= 8 else ()):
        built = attempt(tuple(kept[: i + 1]))
        size, ms = file_size(built.path), latency(built.path)
        rows.append({"layer": name, "added_bytes": size - prev_size,
                     "added_p50_ms": None if ms is None or prev_p50 is None else round(ms - prev_p50, 4)})
        prev_size, prev_p50 = size, ms
    if kept:
        built = attempt(kept)
        size, ms = file_size(built.path), latency(built.path)
        rows.append({"layer": "(all kept layers)", "added_bytes": size - base_size,
                     "added_p50_ms": None if ms is None or base_p50 is None else round(ms - base_p50, 4)})
    return rows, base_p50, ms
