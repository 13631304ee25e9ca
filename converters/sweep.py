"""``edgecv sweep``: many models x many devices x many recipes, as jobs on a local process pool or a Ray cluster.

A sweep file (:mod:`edgecv.converters.sweep_file`) expands into jobs of two stages:

1. **recipe jobs**, one per (model, training recipe): :func:`~edgecv.converters.prune.prune`,
   :func:`~edgecv.converters.distill.distill` or :func:`~edgecv.converters.qat.qat` as they are, scored on the
   eval data; the new model (for QAT, its int8 artifacts) lands in ``OUT/models/<model>/<recipe>/``;
2. **device jobs**, one per (model, recipe, device): :func:`~edgecv.converters.optimize.optimize` as it is, on
   the source model (``ptq``) or on the recipe's model, into ``OUT/jobs/<model>/<recipe>/<device>/`` (the
   chosen artifact with its manifest, ``optimize.md``, every candidate under ``candidates/``). Its accuracy
   budget is what the recipe's training left of ``budget.max_drop``. For QAT, the device job checks the QAT
   artifacts the device runs as int8 against it, and chooses among them
   (:data:`~edgecv.converters.sweep_recipes.RECIPES`).

Every job runs in a fresh worker process of the executor (:mod:`edgecv.converters.executors`) and records
its result in ``job.json`` in its folder under a content key of everything that shapes it (the model's bytes,
the data, the options, the device profile's text, the edgecv version): running the sweep again does only the
jobs whose key changed or that never finished, and within a device job, ``optimize`` keeps its finished
candidates the same way. A job that fails is tried again ``budget.retries`` times, then reported; the jobs
that depended on it are reported as skipped.

Then, for each model and device, the chosen artifact is the one of all recipes whose total loss (the recipe's
points plus the quantization's) fits the budget: the fastest where the device was benchmarked, else the
smallest. ``OUT/sweep.json``, ``sweep.md`` and ``sweep.png`` (accuracy lost against size, one panel per model
and device) say what was chosen and what happened to every job and candidate.

Example:
    >>> result = sweep("sweep.yaml", out="runs/sweep", executor="ray")          # doctest: +SKIP
    >>> [(row["model"], row["device"], row["artifact"]) for row in result.chosen]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecv.errors import ConfigError
from edgecv.fileio import atomic_write_text

log = logging.getLogger(__name__)

DONE_FILE = "job.json"
ATTEMPTS_FILE = "attempts"
KEY_VERSION = 1
TOLERANCE = 1e-9  # points: a total loss this far over the budget still fits (float sums)


@dataclass
class Job:
    """One job: ``stage`` (``recipe`` or ``device``), what it is for, its folder and content key, the task the
    worker gets, and how it ended: ``status`` ``done``, ``resumed`` (kept from an earlier run), ``failed`` or
    ``skipped`` (a job it needs failed), its ``result`` or ``error``, and ``attempts`` (runs started)."""

    stage: str
    model: str
    recipe: str
    device: str | None
    folder: Path
    key: str
    task: dict[str, Any] = field(repr=False)
    status: str = "pending"
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0

    @property
    def name(self) -> str:
        return "/".join(x for x in (self.model, self.recipe, self.device) if x)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "model": self.model, "recipe": self.recipe, "device": self.device,
                "folder": str(self.folder), "status": self.status, "error": self.error, "attempts": self.attempts,
                "result": self.result}


@dataclass
class SweepResult:
    """The sweep's jobs, the artifact chosen for each model and device (``chosen``: one row each, with
    ``artifact`` None where nothing fits), the executor, and the wall time."""

    file: str
    out: Path
    executor: dict[str, Any]
    jobs: list[Job]
    chosen: list[dict[str, Any]]
    seconds: float
    max_drop: float

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.status in ("failed", "skipped")]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "out": str(self.out), "executor": self.executor, "seconds": round(self.seconds, 1),
                "max_drop": self.max_drop, "chosen": self.chosen, "jobs": [j.to_dict() for j in self.jobs]}


# -- in the worker ------------------------------------------------------------------------------------------


def run_job(task: dict[str, Any]) -> dict[str, Any]:
    """Run one job in this (worker) process and record its result in its folder's ``job.json``."""
    from edgecv.converters.sweep_recipes import RECIPES

    folder = Path(task["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    attempts = folder / ATTEMPTS_FILE
    previous = int(attempts.read_text() or 0) if attempts.is_file() else 0
    atomic_write_text(attempts, f"{previous + 1}\n")
    if task["stage"] == "recipe":
        transform = RECIPES[task["recipe"]["kind"]].transform
        if transform is None:
            raise ConfigError(f"recipe kind {task['recipe']['kind']}: it trains nothing, so it has no recipe job")
        result = transform(task)
    else:
        device = RECIPES[task["recipe_kind"]].device
        result = device(task) if device is not None else _optimize(task)
    atomic_write_text(folder / DONE_FILE, json.dumps({"key": task["key"], "result": result}, indent=1, default=str) + "\n")
    return result


def _optimize(task: dict[str, Any]) -> dict[str, Any]:
    from edgecv.converters.optimize import OptimizeOptions, optimize
    from edgecv.errors import ValidationError

    out = Path(task["folder"]) / "out"
    try:
        return optimize(task["model"], device=task["device"], calib=task["calib"], eval_data=task["eval"],
                        max_drop=task["max_drop"], out=out, detector=task["detector"], preprocess=task["preprocess"],
                        labels=task["labels"], options=OptimizeOptions(workers=1, runs=task["bench_runs"],
                                                                        calib_samples=task["calib_samples"])).to_dict()
    except ValidationError:  # no candidate fits the device: a result (optimize wrote every candidate's reason)
        return json.loads((out / "optimize.json").read_text())


# -- on the driver ------------------------------------------------------------------------------------------


def _key(parts: dict[str, Any]) -> str:
    from edgecv import __version__

    text = json.dumps({"v": KEY_VERSION, "edgecv": __version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _finished(job: Job) -> dict[str, Any] | None:
    """The result an earlier run recorded for this job under the same key, if its files are still there."""
    f = job.folder / DONE_FILE
    try:
        record = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    result = record.get("result") if record.get("key") == job.key else None
    if not isinstance(result, dict):
        return None
    if job.stage == "recipe":
        kept = [result.get("model"), *(result.get("artifacts") or {}).values()]
    else:
        kept = [(result.get("chosen") or {}).get("path")]
    return None if any(k and not Path(k).is_file() for k in kept) else result


def _attempts(job: Job) -> int:
    try:
        return int((job.folder / ATTEMPTS_FILE).read_text() or 0)
    except (OSError, ValueError):
        return 0


def _run(executor: Any, jobs: list[Job], sweep: Any, bar: Any) -> None:
    """Run the jobs not already finished under their key; every job ends with a status."""
    todo = []
    for job in jobs:
        if job.status == "skipped":
            bar.update(1)
            continue
        kept = _finished(job)
        if kept is not None:
            job.status, job.result, job.attempts = "resumed", kept, _attempts(job)
            bar.update(1)
        else:
            todo.append(job)
    if not todo:
        return
    from edgecv.converters.executors import Outcome

    def done(outcome: Outcome) -> None:
        job = todo[outcome.index]
        job.status = "done" if outcome.ok else "failed"
        job.result, job.error, job.attempts = outcome.result, outcome.error, _attempts(job)
        if not outcome.ok:
            log.warning("sweep job %s failed after %d attempt(s): %s", job.name, job.attempts, job.error)
        bar.update(1)
        bar.set_description(f"{job.name}: {job.status}")

    res = sweep.resources
    executor.run(run_job, [{**j.task, "job": j.name} for j in todo], cpus=res.cpus, memory_mb=res.memory_mb, retries=sweep.budget.retries,
                 done=done)


def _recipe_loss(job: Job | None) -> float | None:
    """The top-1 points a recipe's training lost on the eval data (0 for a gain; None when unscored, or when its
    device jobs measure the whole loss themselves)."""
    from edgecv.converters.sweep_recipes import RECIPES

    if job is None or job.result is None or RECIPES[job.task["recipe"]["kind"]].folds_loss:
        return None
    before, after = job.result.get("top1_source"), job.result.get("top1")
    if before is None or after is None:
        return None
    return max(0.0, round(100.0 * (before - after), 4))


def applied(sweep: Any, model: str) -> dict[str, Any]:
    """The recipes that apply to ``model``, in the file's order."""
    names = sweep.models[model].recipes
    return {r: e for r, e in sweep.recipes.items() if names is None or r in names}


def expand(sweep: Any, out: Path) -> list[Job]:
    """The sweep's recipe jobs (its device jobs are made once those have run: :func:`device_jobs`)."""
    from edgecv.converters.optimize import data_key, model_key
    from edgecv.converters.sweep_recipes import RECIPES

    jobs = []
    for m, entry in sweep.models.items():
        for r, recipe in applied(sweep, m).items():
            if RECIPES[recipe.kind].transform is None:
                continue
            folder = out / "models" / m / r
            rec = dataclasses.asdict(recipe)
            key = _key({"stage": "recipe", "model": model_key(Path(entry.file)), "recipe": rec,
                        "train": data_key(sweep.data.train), "eval": data_key(sweep.data.eval),
                        "preprocess": repr(entry.preprocess)})
            task = {"stage": "recipe", "folder": str(folder), "key": key, "model": entry.file, "name": f"{m}.{r}",
                    "recipe": rec, "train": sweep.data.train, "eval": sweep.data.eval, "preprocess": entry.preprocess}
            jobs.append(Job("recipe", m, r, None, folder, key, task))
    return jobs


def device_jobs(sweep: Any, out: Path, recipe_jobs: list[Job]) -> list[Job]:
    """One job per (model, recipe, device), on the source model or on its recipe job's model; skipped where
    that job failed or its training alone spent the budget."""
    from edgecv.converters.optimize import data_key, model_key

    made = {(j.model, j.recipe): j for j in recipe_jobs}
    jobs = []
    for m, entry in sweep.models.items():
        for r, recipe in applied(sweep, m).items():
            before = made.get((m, r))
            lost = _recipe_loss(before)
            source = entry.file if before is None else (before.result or {}).get("model")
            artifacts = (before.result or {}).get("artifacts") if before is not None else None
            for profile in sweep.profiles:
                folder = out / "jobs" / m / r / profile.name
                budget = max(0.0, sweep.budget.max_drop - (lost or 0.0))
                parts = {"stage": "device", "source": model_key(Path(source)) if source else None,
                         "device": profile.path.read_text() if profile.path else profile.name,
                         "calib": data_key(sweep.data.calib), "eval": data_key(sweep.data.eval), "max_drop": budget,
                         "bench_runs": sweep.budget.bench_runs, "calib_samples": sweep.data.calib_samples,
                         "preprocess": repr(entry.preprocess), "detector": entry.detector, "labels": entry.labels,
                         "recipe": recipe.kind,
                         "artifacts": {f: model_key(Path(a)) for f, a in (artifacts or {}).items()} or None}
                task = {"stage": "device", "folder": str(folder), "key": _key(parts), "model": source,
                        "device": str(profile.path or profile.name), "calib": sweep.data.calib, "eval": sweep.data.eval,
                        "max_drop": budget, "detector": entry.detector, "preprocess": entry.preprocess,
                        "labels": list(entry.labels) if entry.labels else None, "bench_runs": sweep.budget.bench_runs,
                        "calib_samples": sweep.data.calib_samples, "recipe_kind": recipe.kind,
                        "made": before.result if before is not None else None}
                job = Job("device", m, r, profile.name, folder, task["key"], task)
                if before is not None and before.status not in ("done", "resumed"):
                    job.status, job.error = "skipped", f"its {r} job {before.status}: {before.error}"
                elif lost is not None and lost > sweep.budget.max_drop + TOLERANCE:
                    job.status = "skipped"
                    job.error = f"the {r} recipe alone lost {lost:.2f} points, over the {sweep.budget.max_drop:g}-point budget"
                jobs.append(job)
    return jobs


def choose(sweep: Any, recipe_jobs: list[Job], jobs: list[Job]) -> list[dict[str, Any]]:
    """For each model and device, the recipe whose chosen artifact fits the budget in total and is fastest
    (where benchmarked) or smallest; every option's figures and why it won or lost."""
    losses = {(j.model, j.recipe): _recipe_loss(j) for j in recipe_jobs}
    rows = []
    for m in sweep.models:
        for profile in sweep.profiles:
            options = []
            for job in (j for j in jobs if j.model == m and j.device == profile.name):
                chosen = (job.result or {}).get("chosen") if job.status in ("done", "resumed") else None
                recipe_loss = losses.get((m, job.recipe)) or 0.0
                option = {"recipe": job.recipe, "status": job.status, "artifact": None, "why": job.error or ""}
                if chosen is not None:
                    quant = chosen.get("drop_points")
                    total = None if quant is None else round(recipe_loss + quant, 4)
                    option.update(artifact=chosen.get("path"), candidate=f"{chosen.get('format')}-{chosen.get('precision')}",
                                  recipe_loss=recipe_loss, quant_loss=quant, total_loss=total,
                                  size_bytes=chosen.get("size_bytes"), p50_ms=chosen.get("p50_ms"))
                elif job.status in ("done", "resumed"):
                    option["why"] = (job.result or {}).get("why") or "no candidate fits the device"
                options.append(option)
            fits = [o for o in options if o["artifact"] and (o["total_loss"] is None
                                                            or o["total_loss"] <= sweep.budget.max_drop + TOLERANCE)]
            for o in options:
                if o["artifact"] and o not in fits:
                    o["why"] = f"loses {o['total_loss']:.2f} points in all, over the {sweep.budget.max_drop:g}-point budget"
            best = None
            if fits:
                timed = [o for o in fits if o["p50_ms"] is not None]
                best = (min(timed, key=lambda o: o["p50_ms"]) if timed
                        else min(fits, key=lambda o: o["size_bytes"] or 0))
                best["why"] = (f"fastest that fits: p50 {best['p50_ms']:.3f} ms" if timed
                               else "smallest that fits (the device was not benchmarked)")
                for o in fits:
                    if o is not best:
                        o["why"] = (f"{o['p50_ms'] / best['p50_ms']:.2f}x slower than {best['recipe']}"
                                    if timed and o["p50_ms"] else f"larger than {best['recipe']}")
            rows.append({"model": m, "device": profile.name, "recipe": best["recipe"] if best else None,
                         "artifact": best["artifact"] if best else None,
                         **{k: best.get(k) if best else None for k in ("candidate", "total_loss", "size_bytes", "p50_ms")},
                         "options": options})
    return rows


def sweep(file: str | Path | Any, *, out: str | Path, executor: str = "local", workers: int | None = None,
          progress: bool = False, verbose: bool = False) -> SweepResult:
    """Run the sweep ``file`` (a path, or a loaded :class:`~edgecv.converters.sweep_file.SweepFile`) into ``out``
    with ``executor`` (:func:`edgecv.converters.executors.make_executor`; ``verbose`` lets Ray log to the terminal);
    see the module docstring. Bad files
    are a one-line ConfigError before any job starts; failed jobs are in the result (``failed``), not raised."""
    from tqdm import tqdm

    from edgecv.converters.executors import make_executor
    from edgecv.converters.sweep_file import SweepFile, load_sweep
    from edgecv.fileio import ensure_writable_dir

    plan = file if isinstance(file, SweepFile) else load_sweep(file)
    runner = make_executor(executor, workers=workers, verbose=verbose)
    out = ensure_writable_dir(out)
    started = time.perf_counter()
    recipe_jobs = expand(plan, out)
    total = len(recipe_jobs) + sum(len(applied(plan, m)) for m in plan.models) * len(plan.profiles)
    with tqdm(total=total, unit="job", leave=False, disable=not progress) as bar:
        _run(runner, recipe_jobs, plan, bar)
        jobs = device_jobs(plan, out, recipe_jobs)
        _run(runner, jobs, plan, bar)
    result = SweepResult(str(plan.path), out, runner.describe(), recipe_jobs + jobs, choose(plan, recipe_jobs, jobs),
                         time.perf_counter() - started, plan.budget.max_drop)
    write_report(result)
    return result


# -- the report ---------------------------------------------------------------------------------------------


def write_report(result: SweepResult) -> None:
    """``sweep.json``, ``sweep.md`` and ``sweep.png`` in the sweep's folder."""
    from edgecv.fileio import atomic_write_bytes

    atomic_write_text(result.out / "sweep.json", json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    atomic_write_text(result.out / "sweep.md", report_markdown(result))
    png = _plot(result)
    if png is not None:
        atomic_write_bytes(result.out / "sweep.png", png)


def report_markdown(result: SweepResult) -> str:
    from edgecv.tables import fmt_float, human_bytes

    ex = result.executor
    lines = [f"# edgecv sweep: {Path(result.file).name}", "",
             f"{len(result.jobs)} jobs on the {ex['executor']} executor in {result.seconds:.0f} s; accuracy budget "
             f"{result.max_drop:g} points (recipe and quantization together).", "",
             "## Chosen, per model and device", "",
             "| model | device | recipe | candidate | points lost | size | p50 ms | artifact |", "|---|---|---|---|---|---|---|---|"]
    for row in result.chosen:
        lines.append(f"| {row['model']} | {row['device']} | {row['recipe'] or '-'} | {row['candidate'] or '-'} | "
                     f"{fmt_float(row['total_loss'], '.2f')} | {human_bytes(row['size_bytes']) if row['size_bytes'] else '-'} | "
                     f"{fmt_float(row['p50_ms'], '.3f')} | {Path(row['artifact']).name if row['artifact'] else 'nothing fits'} |")
    lines += ["", "## Every option", "", "| model | device | recipe | status | candidate | recipe lost | quant lost | size | why |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in result.chosen:
        for o in row["options"]:
            lines.append(f"| {row['model']} | {row['device']} | {o['recipe']} | {o['status']} | {o.get('candidate') or '-'} | "
                         f"{fmt_float(o.get('recipe_loss'), '.2f')} | {fmt_float(o.get('quant_loss'), '.2f')} | "
                         f"{human_bytes(o['size_bytes']) if o.get('size_bytes') else '-'} | {o['why']} |")
    lines += ["", "## Every candidate", "", "| job | candidate | verdict | drop | size | why |", "|---|---|---|---|---|---|"]
    for job in result.jobs:
        if job.stage != "device":
            continue
        for c in (job.result or {}).get("candidates") or []:
            lines.append(f"| {job.name} | {c['format']}-{c['precision']} | {c['verdict']} | {fmt_float(c.get('drop_points'), '.2f')} | "
                         f"{human_bytes(c['size_bytes']) if c.get('size_bytes') else '-'} | {c['why']} |")
    lines += ["", "## Jobs", "", "| job | stage | status | attempts | error |", "|---|---|---|---|---|"]
    for job in result.jobs:
        lines.append(f"| {job.name} | {job.stage} | {job.status} | {job.attempts} | {job.error or ''} |")
    return "\n".join(lines) + "\n"


def _plot(result: SweepResult) -> bytes | None:
    """Points lost against size, one panel per model and device; the chosen option in green."""
    panels = [row for row in result.chosen if any(o.get("artifact") for o in row["options"])]
    if not panels:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), dpi=100, squeeze=False)
    for ax, row in zip(axes[0], panels):
        for o in row["options"]:
            if not o.get("artifact") or o.get("total_loss") is None:
                continue
            colour = "tab:green" if o["recipe"] == row["recipe"] else "tab:blue"
            x = (o["size_bytes"] or 0) / 1024
            ax.scatter([x], [o["total_loss"]], color=colour)
            ax.annotate(f"{o['recipe']} {o['candidate']}", (x, o["total_loss"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.axhline(result.max_drop, color="tab:red", linewidth=0.8, linestyle="--")
        ax.set_title(f"{row['model']} on {row['device']}", fontsize=9)
        ax.set_xlabel("size (KB)")
        ax.set_ylabel("points lost")
        ax.grid(alpha=0.3)
    fig.suptitle("edgecv sweep (green: chosen; dashed: the budget)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
