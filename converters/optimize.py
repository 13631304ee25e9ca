"""One-command optimization for a device: every candidate the device profile allows, built, checked,
benchmarked, and the best one chosen with the reasons written down.

1. Candidates: the (format, precision) pairs of the profile (``DeviceProfile.candidates()``).
2. Each is built by :func:`edgecv.converters.export.export` (post-training quantization calibrated on ``calib``,
   the accuracy gate on ``eval_data`` with ``max_drop``, float fallback where the device runs float layers,
   the batch fixed to 1 where the accelerator takes static shapes only, the profile's int8 I/O type; for an
   integer-only accelerator, an ONNX detector whose spec's decoder has a cut is cut before its box decoding,
   :mod:`edgecv.converters.decode_cut`, so every op maps to it), in its own process, several at once (``workers``, default: the local cores). Each candidate's result is
   kept in ``out/candidates/<format>-<precision>/candidate.json`` under a key of everything that shaped it,
   so a killed run continues where it stopped and a changed option rebuilds only what it changes.
3. Each built artifact is checked against the device (:func:`edgecv.compat.check_artifact`): blockers
   exclude it; fallbacks (layers that would run on the CPU) are listed.
4. Those that pass are benchmarked where the device is reachable: here for a ``host: local`` profile, over
   SSH with ``remote="user@host"``; otherwise they are compared by size and the profile's preferred recipe.
5. The winner is the fastest that passes (or, unbenchmarked, the preferred recipe, else the smallest); it is
   published to ``out`` with its manifest and ``optimize.json``, ``optimize.md`` and ``report.png`` (accuracy
   against latency and size; why every candidate won or lost), all at once (:mod:`edgecv.converters.publish`).

Example:
    >>> result = optimize("model.keras", device="raspberry-pi-5", calib="frames/", eval_data="labelled/",
    ...                   out="runs/opt")                                              # doctest: +SKIP
    >>> result.chosen.path.name, result.rows[0]["why"]                                 # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgecv.errors import ConfigError, ValidationError
from edgecv.fileio import atomic_write_text, ensure_writable_dir

log = logging.getLogger(__name__)

CANDIDATE_FILE = "candidate.json"
KEY_VERSION = 1


@dataclass(frozen=True)
class OptimizeOptions:
    """Expert settings: ``runs`` timed benchmark runs per candidate, ``threads`` per runtime, ``workers``
    parallel builds (None: one per local core), ``calib_samples``; for a remote device, its ``python``
    (with edgecv installed), the SSH ``port``, ``identity`` key file and extra ``ssh_options``
    (``Name=value``)."""

    runs: int = 50
    threads: int | None = None
    workers: int | None = None
    calib_samples: int = 300
    python: str = "python3"
    port: int | None = None
    identity: str | Path | None = None
    ssh_options: tuple[str, ...] = ()


@dataclass
class Candidate:
    """One (format, precision) candidate and what happened to it: ``build`` (the export's artifact result
    as a dict), ``compat`` (the device check), ``bench`` (latency), ``verdict`` and ``why``."""

    format: str
    precision: str
    build: dict[str, Any] = field(default_factory=dict)
    compat: dict[str, Any] | None = None
    bench: dict[str, Any] | None = None
    verdict: str = "lost"
    why: str = ""
    resumed: bool = False

    @property
    def name(self) -> str:
        return f"{self.format}-{self.precision}"

    @property
    def path(self) -> Path | None:
        p = self.build.get("path")
        return Path(p) if p else None

    @property
    def passed(self) -> bool:
        return self.build.get("status") == "passed"

    @property
    def runs_there(self) -> bool:
        return self.compat is not None and self.compat.get("ok", False)

    @property
    def p50_ms(self) -> float | None:
        return None if self.bench is None else self.bench.get("p50_ms")

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "precision": self.precision, "verdict": self.verdict, "why": self.why,
                "path": str(self.path) if self.path else None, "status": self.build.get("status"),
                "reason": self.build.get("reason"), "drop_points": self.build.get("drop_points"),
                "size_bytes": self.build.get("size_bytes"), "p50_ms": self.p50_ms, "compat": self.compat,
                "bench": self.bench, "resumed": self.resumed}


@dataclass
class OptimizeResult:
    """The chosen candidate (None when no candidate fits), every candidate, and where it all went."""

    device: str
    out: Path
    chosen: Candidate | None
    candidates: list[Candidate]
    benchmarked_on: str | None
    seconds: float
    source: str
    metric: str | None = None
    # Whether the calibration set represents the eval set (edgecv.converters.calib_check), as the builds found it.
    calibration_check: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "source": self.source, "out": str(self.out),
                "chosen": self.chosen.to_dict() if self.chosen else None, "benchmarked_on": self.benchmarked_on,
                "seconds": round(self.seconds, 1), "metric": self.metric, "calibration_check": self.calibration_check,
                "candidates": [c.to_dict() for c in self.candidates]}


def model_key(model: Path) -> str:
    """SHA-256 of a model file's bytes; for a folder, of its files' names, sizes and modification times."""
    h = hashlib.sha256()
    if model.is_dir():
        for p in sorted(model.rglob("*")):
            if p.is_file():
                h.update(f"{p.relative_to(model)}:{p.stat().st_size}:{p.stat().st_mtime_ns}".encode())
    else:
        with open(model, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def data_key(data: Any) -> Any:
    """What identifies a data set in a content key: a file's path, size and modification time; a folder's path,
    file count and bytes; anything else as text."""
    if data is None:
        return None
    p = Path(data)
    if p.is_file():
        return {"path": str(p.resolve()), "size": p.stat().st_size, "mtime": p.stat().st_mtime_ns}
    if p.is_dir():
        files = sorted(x for x in p.rglob("*") if x.is_file())
        return {"path": str(p.resolve()), "files": len(files), "bytes": sum(x.stat().st_size for x in files)}
    return str(data)


def _build(task: dict[str, Any]) -> dict[str, Any]:
    """Build one candidate (in a worker process): export it into its folder and record the result there."""
    from edgecv.converters.export import ExportOptions, export
    from edgecv.converters.quant import QuantOptions

    folder = Path(task["folder"])
    if folder.exists():
        shutil.rmtree(folder)  # a half-built candidate from a killed run
    started = time.perf_counter()
    quant = QuantOptions(calib_samples=task["calib_samples"], io_type=task["io_type"], fallback=task["fallback"])
    report = export(task["model"], to=[task["format"]], quant=[task["precision"]], calib=task["calib"],
                    eval_data=task["eval"], max_drop=task["max_drop"], out=folder, name=task["name"],
                    preprocess=task["preprocess"], labels=task["labels"], detector=task["detector"],
                    options=ExportOptions(bench_runs=0, quant=quant, static_batch=task["static_batch"]),
                    trust_source=task["trust_source"], calib_include_eval=task.get("calib_include_eval", False),
                    cut_decode=task.get("cut_decode", False))
    result = report.artifacts[0].to_dict()
    result["seconds"] = round(time.perf_counter() - started, 1)
    from edgecv.converters.report import metric_name

    record = {"key": task["key"], "build": result, "metric": metric_name(report),
              "calibration_check": report.settings.get("calibration_check")}
    atomic_write_text(folder / CANDIDATE_FILE, json.dumps(record, indent=1, default=str) + "\n")
    return record


def _cut_decode(model: Path, detector, full_integer: bool) -> bool:
    """Whether the candidates for an integer-only accelerator are cut before their box decoding (export's
    ``cut_decode``): an ONNX detector whose spec's decoder has a cut, so every op maps to the accelerator."""
    if not (full_integer and detector and model.suffix.lower() == ".onnx"):
        return False
    from edgecv.converters.decode_cut import CUTS
    from edgecv.detection import load_spec

    if load_spec(detector).decoder not in CUTS:
        return False
    log.info("the box decoding of %s is cut off for the integer-only accelerator: the yolo_dfl decoder runs it on the CPU", model.name)
    return True


def _resumable(folder: Path, key: str) -> dict[str, Any] | None:
    f = folder / CANDIDATE_FILE
    if not f.is_file():
        return None
    try:
        record = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    path = record.get("build", {}).get("path")
    if record.get("key") != key or (path and not Path(path).is_file()):
        return None
    return record


def optimize(
    model: str | Path,
    *,
    device: str | Path,
    calib: Any,
    eval_data: Any = None,
    max_drop: float = 1.0,
    out: str | Path = "optimize",
    detector: str | Path | None = None,
    preprocess: Any = None,
    labels: Sequence[str] | None = None,
    remote: str | None = None,
    options: OptimizeOptions = OptimizeOptions(),
    progress: bool = False,
    trust_source: bool = False,
    calib_include_eval: bool = False,
) -> OptimizeResult:
    """Build, check, benchmark and choose (see the module docstring). Raises a one-line
    :class:`~edgecv.errors.ValidationError` listing every candidate's reason when none fits the device.
    ``trust_source`` is :func:`~edgecv.converters.export.export`'s: without it a SavedModel with side-effecting
    ops is refused here, before any candidate is built (docs/security.md). ``calib_include_eval`` is export's
    too: the eval images join the calibration set of every calibrated candidate."""
    from tqdm import tqdm

    from edgecv.converters.targets import TARGETS
    from edgecv.devices import load_profile

    started = time.perf_counter()
    profile = load_profile(device)
    model = Path(model)
    if not model.exists():
        raise ConfigError(f"model not found: {model}")
    if not trust_source:
        from edgecv.converters.source_scan import refuse_unsafe_source

        refuse_unsafe_source(model)
    if calib is None and any(p in ("int8", "int16x8") for _, p in profile.candidates()):
        raise ConfigError(f"{profile.name} runs int8: pass calibration images (--calib)")
    if remote is not None and profile.local:
        raise ConfigError(f"{profile.name} is this machine (host: local); --remote is for other devices")
    out = ensure_writable_dir(out)
    accel = profile.accelerator
    full_integer = bool(accel and accel.full_integer)
    from edgecv import __version__

    base = {"v": KEY_VERSION, "edgecv": __version__, "model": model_key(model), "calib": data_key(calib), "eval": data_key(eval_data),
            "max_drop": max_drop, "detector": str(detector) if detector else None,
            "preprocess": repr(preprocess), "labels": list(labels) if labels else None,
            "io_type": profile.quantization.io, "fallback": not full_integer, "samples": options.calib_samples,
            **({"calib_include_eval": True} if calib_include_eval else {})}
    cut = _cut_decode(model, detector, full_integer)
    candidates, tasks = [], []
    metric: str | None = None
    calib_check: dict[str, Any] | None = None  # the first calibrated candidate's (they all measure the same sets)
    for fmt, precision in profile.candidates():
        c = Candidate(fmt, precision)
        folder = out / "candidates" / c.name
        static = bool(accel and accel.static_shapes and fmt in accel.formats)
        cut_here = cut and fmt in accel.formats
        key = hashlib.sha256(json.dumps({**base, "format": fmt, "precision": precision, "static_batch": static,
                                         **({"cut_decode": True} if cut_here else {})},
                                        sort_keys=True, default=str).encode()).hexdigest()
        record = _resumable(folder, key)
        if record is not None:
            c.build, c.resumed = record["build"], True
            metric = metric or record.get("metric")
            calib_check = calib_check or record.get("calibration_check")
        else:
            tasks.append((c, {"folder": str(folder), "key": key, "model": str(model), "format": fmt,
                              "precision": precision, "calib": calib, "eval": eval_data, "max_drop": max_drop,
                              "name": model.stem, "preprocess": preprocess, "labels": list(labels) if labels else None,
                              "detector": detector, "calib_samples": options.calib_samples,
                              "io_type": profile.quantization.io if TARGETS[fmt].integer_io else "float",
                              "fallback": not full_integer, "static_batch": static, "trust_source": trust_source,
                              "calib_include_eval": calib_include_eval, "cut_decode": cut_here}))
        candidates.append(c)
    if tasks:
        workers = max(1, min(options.workers or os.cpu_count() or 1, len(tasks)))
        log.info("%s: building %d candidate(s) with %d worker(s); %d resumed", profile.name, len(tasks), workers,
                 len(candidates) - len(tasks))
        ctx = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
        from edgecv.child import die_with_parent

        # A worker dies with this process, even when it is SIGKILLed (Linux), rather than build on unseen.
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent,
                                                    initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(_build, task): c for c, task in tasks}
            bar = tqdm(total=len(futures), unit="candidate", leave=False, disable=not progress)
            for future in concurrent.futures.as_completed(futures):
                c = futures[future]
                record = future.result()
                c.build = record["build"]
                metric = metric or record.get("metric")
                calib_check = calib_check or record.get("calibration_check")
                bar.update(1)
                bar.set_description(f"{c.name}: {c.build['status']}")
            bar.close()
    if calib_check and calib_check.get("representative") is False:
        log.warning("%s", calib_check["note"])  # the builds logged it in their own processes, out of sight
    _check(candidates, profile)
    where = _benchmark(candidates, profile, remote, options)
    chosen = _choose(candidates, profile, max_drop)
    result = OptimizeResult(profile.name, out, chosen, candidates, where, time.perf_counter() - started, str(model),
                            metric, calib_check)
    _write(result, profile, max_drop)
    if chosen is None:
        reasons = "; ".join(f"{c.name}: {c.why}" for c in candidates)
        raise ValidationError(f"no candidate fits {profile.name}: {reasons}")
    return result


def _check(candidates: list[Candidate], profile: Any) -> None:
    from edgecv.compat import check_artifact

    for c in candidates:
        if c.passed and c.path is not None:
            c.compat = check_artifact(c.path, profile).to_dict()


def _benchmark(candidates: list[Candidate], profile: Any, remote: str | None, options: OptimizeOptions) -> str | None:
    ready = [c for c in candidates if c.passed and c.runs_there]
    if not ready:
        return None
    if profile.local:
        from edgecv.bench import benchmark

        for c in ready:
            c.bench = benchmark(c.path, runs=options.runs, threads=options.threads).to_dict()
        return "local"
    if remote is None:
        return None
    from edgecv.remote import RemoteHost

    with RemoteHost(remote, python=options.python, port=options.port, identity=options.identity,
                    options=options.ssh_options) as host:
        for c in ready:
            c.bench = host.benchmark(c.path, runs=options.runs, warmup=10, threads=options.threads, batch=1,
                                     backend=None)
    return remote


def _first_blocker(c: Candidate) -> str:
    blockers = (c.compat or {}).get("blockers") or []
    first = blockers[0] if blockers else "blocked"
    text = first.get("message", str(first)) if isinstance(first, dict) else str(first)
    more = f" (+{len(blockers) - 1} more)" if len(blockers) > 1 else ""
    return text + more


def _choose(candidates: list[Candidate], profile: Any, max_drop: float) -> Candidate | None:
    for c in candidates:
        if not c.passed:
            c.verdict, c.why = "failed", c.build.get("reason") or "did not pass the accuracy gate"
        elif not c.runs_there:
            c.verdict, c.why = "blocked", _first_blocker(c)
    ok = [c for c in candidates if c.passed and c.runs_there]
    if not ok:
        return None
    timed = [c for c in ok if c.p50_ms is not None]
    if timed:
        best = min(timed, key=lambda c: c.p50_ms)
        best.why = f"fastest that passes: p50 {best.p50_ms:.3f} ms"
        for c in ok:
            if c is not best:
                c.why = (f"{c.p50_ms / best.p50_ms:.2f}x slower than {best.name} ({c.p50_ms:.3f} ms)"
                         if c.p50_ms is not None else "not benchmarked")
    else:
        preferred = [c for c in ok if (c.format, c.precision) == (profile.preferred.format, profile.preferred.precision)]
        best = preferred[0] if preferred else min(ok, key=lambda c: c.build.get("size_bytes") or 0)
        best.why = ("the profile's preferred recipe (the device was not reachable to benchmark)" if preferred else
                    "smallest that passes (the device was not reachable to benchmark)")
        for c in ok:
            if c is not best:
                c.why = f"not benchmarked; {best.name} is {'preferred' if preferred else 'smaller'}"
    best.verdict = "chosen"
    fallbacks = (best.compat or {}).get("fallbacks") or []
    if fallbacks:
        best.why += f"; {len(fallbacks)} part(s) fall back to the CPU"
    return best


def _write(result: OptimizeResult, profile: Any, max_drop: float) -> None:
    from edgecv.formats import format_for_path
    from edgecv.manifest import manifest_path
    from edgecv.converters.publish import Publication

    # The chosen artifact (its files and manifest) and the summaries land together: killed at any moment,
    # ``out`` holds the previous choice with its summaries, or this one with its own.
    with Publication(result.out) as pub:
        if result.chosen is not None and result.chosen.path is not None:
            src = result.chosen.path
            for f in format_for_path(src).files(src) + [manifest_path(src)]:
                if f.exists():
                    shutil.copy2(f, pub.staging / f.name)
        _write_summaries(result, profile, max_drop, pub.staging)
        if not (pub.staging / "report.png").exists():
            pub.discard("report.png")
        pub.publish()


def _write_summaries(result: OptimizeResult, profile: Any, max_drop: float, out: Path) -> None:
    from edgecv.tables import fmt_float, human_bytes

    atomic_write_text(out / "optimize.json", json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    lines = [f"# edgecv optimize: {Path(result.source).name} for {profile.name}", "",
             f"{profile.description}. Accuracy budget: {max_drop:g} points; benchmarked "
             f"{'here' if result.benchmarked_on == 'local' else 'on ' + result.benchmarked_on if result.benchmarked_on else 'nowhere (device not reachable)'}.",
             "", "| candidate | verdict | drop (points) | size | p50 ms | CPU fallbacks | why |", "|---|---|---|---|---|---|---|"]
    for c in result.candidates:
        fallbacks = len((c.compat or {}).get("fallbacks") or [])
        lines.append(f"| {c.name} | {c.verdict} | {fmt_float(c.build.get('drop_points'), '.2f')} | "
                     f"{human_bytes(c.build['size_bytes']) if c.build.get('size_bytes') else '-'} | "
                     f"{fmt_float(c.p50_ms, '.3f')} | {fallbacks} | {c.why} |")
    chosen = result.chosen
    lines += ["", f"Chosen: `{chosen.path.name}`" if chosen and chosen.path else "Chosen: none", ""]
    if result.calibration_check:
        lines += [f"Calibration: {result.calibration_check['note']}", ""]
    atomic_write_text(out / "optimize.md", "\n".join(lines))
    png = _plot(result)
    if png is not None:
        from edgecv.fileio import atomic_write_bytes

        atomic_write_bytes(out / "report.png", png)


def _plot(result: OptimizeResult) -> bytes | None:
    """Accuracy drop against latency (or size, where not benchmarked); chosen in green, failed or blocked in red."""
    points = [c for c in result.candidates if c.build.get("drop_points") is not None]
    if not points:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = any(c.p50_ms is not None for c in points)
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(10 if timed else 5, 4), dpi=100, squeeze=False)
    panels = ([("p50_ms", "latency p50 (ms)")] if timed else []) + [("size", "size (KB)")]
    for ax, (key, label) in zip(axes[0], panels):
        for c in points:
            x = c.p50_ms if key == "p50_ms" else (c.build.get("size_bytes") or 0) / 1024
            if x is None:
                continue
            colour = {"chosen": "tab:green", "lost": "tab:blue"}.get(c.verdict, "tab:red")
            ax.scatter([x], [c.build["drop_points"]], color=colour)
            ax.annotate(c.name, (x, c.build["drop_points"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy drop (points)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{Path(result.source).name} for {result.device} (green: chosen, red: failed or blocked)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
