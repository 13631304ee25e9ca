"""Kill ``edgecv export`` at every stage boundary it passes, in both publish modes, and print what OUT held
afterwards (issue 16, all-or-nothing placement).

An old set is exported into OUT first (a tiny CNN, seed 0, beside the user's own files ``notes.txt`` and
``mine/keep.txt``). Each case copies that folder, runs ``python -m edgecv export`` of another model (seed 1,
the same artifact names) into the copy with ``EDGECV_PUBLISH=<mode>`` and ``EDGECV_KILL_AT=<stage>``
(:mod:`edgecv.stages`: the run signals itself at that boundary, no timing involved), then records:

- what OUT holds: the old set, the new set, or a mix; for a mix, the artifacts whose files do not match
  their manifest and whether :func:`edgecv.load` refused each (``refused``) or ran it (``ACCEPTED``);
- the run's leftovers: ``.edgecv-*`` entries in OUT, ``.OUT.edgecv-staging-*`` beside it, ``edgecv-child-*``
  request folders in its TMPDIR;
- its processes: every process carrying the case's marker variable (the CLI, supervisors, workers) seen
  while it ran, and those still alive 10 s after it died;
- the next export into the same OUT (no kill): its exit code, what OUT then holds and what is left over.

The stages of a mode are read from a traced run (``EDGECV_STAGE_TRACE``); a stage passed twice
(``child-started:edgecv.bench``, once per artifact) is killed at each pass (``#2``).
tests/converters/test_publish_kills.py runs the same cases through these functions and asserts on them.

    .venv/bin/python benchmarks/export_kills.py [--modes swap,inplace] [--signals KILL,TERM,INT] [--to onnx,tflite] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from _common import REPO

EXPORT_ARGS = ("--to", "onnx,openvino", "--quant", "fp32", "--name", "tiny", "--samples", "4")
MARKER = "EDGECV_KILLS_CASE"  # set in each run's environment; every process of the run inherits it
USER_FILES = {"notes.txt": b"the user's notes\n", "mine/keep.txt": b"the user's folder\n"}
SUMMARY_FILES = ("report.json", "report.md", "report.png")
LEFTOVER_PREFIX = ".edgecv-"
# How a run stopped by each signal ends: by the signal, or (Ctrl-C) with the CLI's exit code 130.
EXIT_BY_SIGNAL = {"KILL": -signal.SIGKILL, "TERM": -signal.SIGTERM, "INT": 130}


def tiny_onnx(path: Path, seed: int) -> Path:
    """A tiny CNN (conv 3x3, relu, global pool, dense 5) as ONNX; ``seed`` picks its weights."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    weights = {"w1": rng.normal(0, 0.3, (4, 3, 3, 3)), "b1": rng.normal(0, 0.1, (4,)),
               "w2": rng.normal(0, 0.3, (4, 5)), "b2": rng.normal(0, 0.1, (5,))}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["scores"])]
    graph = helper.make_graph(nodes, "tiny_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- processes ----------------------------------------------------------------------------------------


def marked_pids(token: str) -> set[int]:
    """The live processes whose environment holds ``MARKER=token`` (zombies have none left to read, and a
    process shows none for an instant while it execs: poll, as :func:`survivors` does)."""
    needle = f"{MARKER}={token}".encode() + b"\0"
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read() + b"\0":
                    found.add(int(entry))
        except OSError:
            pass
    return found


def survivors(token: str, *, within: float = 10.0) -> list[int]:
    """The processes of the run ``token`` still alive after waiting up to ``within`` seconds for them to go."""
    deadline = time.monotonic() + within
    empty = 0
    while True:
        alive = marked_pids(token)
        # A process in the middle of an exec shows an empty environment for an instant: "none left" must be
        # seen three polls in a row.
        empty = 0 if alive else empty + 1
        if empty >= 3 or time.monotonic() > deadline:
            return sorted(alive)
        time.sleep(0.05)


@dataclass
class Run:
    """One ``edgecv export`` run: its exit code (negative: the signal that ended it), the pids of its
    processes seen while it ran, its stderr, and the stages it traced."""

    returncode: int
    pids: set[int]
    stderr: str
    stages: list[str]
    token: str


def run_export(model: Path, out: Path, *, mode: str, home: Path, kill_at: str | None = None, signal_name: str = "KILL",
               timeout: float = 600) -> Run:
    """``python -m edgecv export MODEL --out OUT`` (:data:`EXPORT_ARGS`), its TMPDIR and caches under ``home``,
    stopped at ``kill_at`` by ``signal_name`` when given; polls /proc for its processes while it runs."""
    token = uuid.uuid4().hex
    for sub in ("tmp", "cache"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    trace = home / f"trace-{token}.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECV_")}
    env.update({"EDGECV_PUBLISH": mode, "EDGECV_STAGE_TRACE": str(trace), "TMPDIR": str(home / "tmp"),
                "EDGECV_CACHE_DIR": str(home / "cache"), MARKER: token,
                "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)})
    if kill_at is not None:
        env.update({"EDGECV_KILL_AT": kill_at, "EDGECV_KILL_SIGNAL": signal_name})
    cmd = [sys.executable, "-m", "edgecv", "export", str(model), *EXPORT_ARGS, "--out", str(out)]
    seen: set[int] = set()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, preexec_fn=_default_sigint)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            seen |= marked_pids(token)
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RuntimeError(f"{' '.join(cmd)} ran past {timeout:g} s")
            time.sleep(0.02)
        err.seek(0)
        stderr = err.read().decode("utf-8", errors="replace")
    stages = trace.read_text().splitlines() if trace.exists() else []
    trace.unlink(missing_ok=True)
    return Run(proc.returncode, seen, stderr, stages, token)


def _default_sigint() -> None:
    """In the run, before its exec: a script started in the background (``&``) has SIGINT ignored, and the run
    would inherit that and never see the Ctrl-C the hook sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# --- what a folder holds ------------------------------------------------------------------------------


@dataclass
class SetRef:
    """A complete set as a clean run leaves it: every file's SHA-256 (user files aside) and its source."""

    files: dict[str, str]
    source: Path

    @property
    def source_sha(self) -> str:
        return sha256(self.source)


def set_files(out: Path) -> dict[str, str]:
    """SHA-256 of every file under ``out`` that is neither the user's nor an edgecv leftover."""
    found = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and rel not in USER_FILES and not any(p.startswith(LEFTOVER_PREFIX) for p in rel.split("/")):
            found[rel] = sha256(path)
    return found


def origin(out: Path, rel: str, old: SetRef, new: SetRef) -> str:
    """Which set the file ``out/rel`` comes from: ``old``, ``new``, ``missing`` or ``?``. Artifact files by
    their bytes (exports are deterministic), manifests by their source's SHA-256, report.json/md by the
    source they name, report.png (timings drawn in it) by being the old one's bytes or not."""
    path = out / rel
    if not path.is_file():
        return "missing"
    if rel.endswith(".json"):
        data = json.loads(path.read_text())
        source = data.get("source")
        key = source.get("sha256") if isinstance(source, dict) else source
        return {old.source_sha: "old", new.source_sha: "new", str(old.source): "old", str(new.source): "new"}.get(key, "?")
    if rel.endswith(".md"):
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        return {f"# Export report: {old.source.name}": "old", f"# Export report: {new.source.name}": "new"}.get(first, "?")
    digest = sha256(path)
    if digest == old.files.get(rel):
        return "old"
    if digest == new.files.get(rel) or (rel == "report.png" and rel in new.files):
        return "new"
    return "?"


def held(out: Path, old: SetRef, new: SetRef) -> str:
    """``old`` or ``new`` when every file of the sets is that set's (and nothing else is there), else ``mixed``."""
    names = set(old.files) | set(new.files) | set(set_files(out))
    origins = {origin(out, rel, old, new) for rel in names}
    return origins.pop() if origins in ({"old"}, {"new"}) else "mixed"


def broken_artifacts(out: Path) -> dict[str, str]:
    """The artifacts in ``out`` whose files do not all match their manifest's ``files``, and what
    :func:`edgecv.load` made of each: ``refused: <error>`` or ``ACCEPTED``."""
    from edgecv import load
    from edgecv.errors import EdgeCVError

    found = {}
    for manifest in sorted(out.glob("*.json")):
        if manifest.name in SUMMARY_FILES:
            continue
        data = json.loads(manifest.read_text())
        files = data.get("files") or {}
        if files and all((out / name).is_file() and sha256(out / name) == digest for name, digest in files.items()):
            continue
        try:
            load(out / data["artifact"])
        except EdgeCVError as exc:
            found[data["artifact"]] = f"refused: {type(exc).__name__}"
        else:
            found[data["artifact"]] = "ACCEPTED"
    return found


def leftovers(out: Path, tmpdir: Path) -> list[str]:
    """What runs left behind: ``.edgecv-*`` under OUT, ``.OUT.edgecv-staging-*`` beside it, request folders in TMPDIR."""
    found = [p.relative_to(out.parent).as_posix() for p in out.rglob(f"{LEFTOVER_PREFIX}*")
             if not any(q.name.startswith(LEFTOVER_PREFIX) for q in p.relative_to(out).parents if q.name)]
    found += [p.name for p in out.parent.glob(f".{out.name}.edgecv-staging-*")]
    found += [f"TMPDIR/{p.name}" for p in tmpdir.glob("edgecv-child-*")] if tmpdir.is_dir() else []
    return sorted(found)


def user_files_intact(out: Path) -> bool:
    return all((out / rel).is_file() and (out / rel).read_bytes() == data for rel, data in USER_FILES.items())


# --- the cases -----------------------------------------------------------------------------------------


@dataclass
class Bench:
    """The sources, the old set (a folder to copy into each case), and a fresh folder per case."""

    root: Path
    old_model: Path
    new_model: Path
    template: Path
    old: SetRef
    cases: int = 0

    def case_dir(self) -> Path:
        self.cases += 1
        home = self.root / f"case{self.cases:03d}"
        home.mkdir()
        shutil.copytree(self.template, home / "OUT")
        return home


def prepare(root: Path) -> Bench:
    """The two sources and the old set in ``root/template/OUT`` with the user's files beside it."""
    src = root / "src"
    src.mkdir(parents=True)
    old_model, new_model = tiny_onnx(src / "a.onnx", seed=0), tiny_onnx(src / "b.onnx", seed=1)
    template = root / "template" / "OUT"
    run = run_export(old_model, template, mode="swap", home=root / "template")
    if run.returncode != 0:
        raise RuntimeError(f"the old set's export failed (exit {run.returncode}): {run.stderr[-2000:]}")
    for rel, data in USER_FILES.items():
        (template / rel).parent.mkdir(parents=True, exist_ok=True)
        (template / rel).write_bytes(data)
    return Bench(root, old_model, new_model, template, SetRef(set_files(template), old_model))


def trace_stages(bench: Bench, mode: str) -> tuple[list[str], SetRef]:
    """The stages a new export into OUT passes in ``mode``, in order, and the new set it leaves."""
    home = bench.case_dir()
    run = run_export(bench.new_model, home / "OUT", mode=mode, home=home)
    if run.returncode != 0:
        raise RuntimeError(f"the traced export failed (exit {run.returncode}): {run.stderr[-2000:]}")
    return run.stages, SetRef(set_files(home / "OUT"), bench.new_model)


def kill_points(stages: list[str]) -> list[str]:
    """``EDGECV_KILL_AT`` values for every boundary of a traced run: a stage's n-th pass is ``stage#n``."""
    seen: Counter[str] = Counter()
    points = []
    for name in stages:
        seen[name] += 1
        points.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return points


@dataclass
class Case:
    """What one killed run left, and what the next run made of it (see the module docstring)."""

    mode: str
    stage: str
    signal: str
    returncode: int
    last_stage: str  # the last stage the killed run traced: the one it was stopped at
    held: str
    broken: dict[str, str]  # artifact -> refused/ACCEPTED, for the artifacts whose files miss their manifest
    report_held: str  # which set's report.json is in OUT
    leftovers: list[str]
    pids_seen: int
    survived: list[int]
    user_files: bool
    next_returncode: int | None = None
    next_held: str = ""
    next_leftovers: list[str] = field(default_factory=list)
    next_user_files: bool = True

    @property
    def accepted_mix(self) -> list[str]:
        return [a for a, what in self.broken.items() if what == "ACCEPTED"]


def run_case(bench: Bench, new: SetRef, *, mode: str, stage: str, signal_name: str = "KILL", next_run: bool = True) -> Case:
    """Kill an export of the new model into a copy of the old set at ``stage``, look, then run the next export."""
    home = bench.case_dir()
    out = home / "OUT"
    run = run_export(bench.new_model, out, mode=mode, home=home, kill_at=stage, signal_name=signal_name)
    gone = survivors(run.token)
    case = Case(mode=mode, stage=stage, signal=signal_name, returncode=run.returncode,
                last_stage=run.stages[-1] if run.stages else "", held=held(out, bench.old, new),
                broken=broken_artifacts(out), report_held=origin(out, "report.json", bench.old, new),
                leftovers=leftovers(out, home / "tmp"), pids_seen=len(run.pids), survived=gone,
                user_files=user_files_intact(out))
    if next_run:
        again = run_export(bench.new_model, out, mode=mode, home=home)
        survivors(again.token)
        case.next_returncode = again.returncode
        case.next_held = held(out, bench.old, new)
        case.next_leftovers = leftovers(out, home / "tmp")
        case.next_user_files = user_files_intact(out)
    shutil.rmtree(home, ignore_errors=True)
    return case


def exit_text(code: int | None) -> str:
    if code is None:
        return "-"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return str(code)


def table(cases: list[Case]) -> str:
    head = ("mode", "killed at", "signal", "exit", "OUT held", "not whole: load", "report.json", "leftovers",
            "pids seen", "survived", "next run", "after next")
    rows = []
    for c in cases:
        broken = ", ".join(f"{a} {w}" for a, w in c.broken.items()) or "-"
        after = "new, clean" if c.next_held == "new" and not c.next_leftovers and c.next_user_files else (
            f"{c.next_held}; left {len(c.next_leftovers)}" if c.next_returncode is not None else "-")
        rows.append((c.mode, c.stage, c.signal, exit_text(c.returncode),
                     c.held + ("" if c.user_files else " (user files lost!)"), broken, c.report_held,
                     str(len(c.leftovers)), str(c.pids_seen), str(len(c.survived)), exit_text(c.next_returncode), after))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(row) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip()

    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, rows)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", default="swap,inplace", help="publish modes (default swap,inplace)")
    p.add_argument("--signals", default="KILL", help="signals to stop each run with at every stage (default KILL)")
    p.add_argument("--to", default="onnx,openvino",
                   help="formats to export (default onnx,openvino; tflite adds the onnx2tf worker and its children)")
    p.add_argument("--json", action="store_true", help="print the cases as JSON")
    args = p.parse_args()
    global EXPORT_ARGS
    EXPORT_ARGS = ("--to", args.to, *EXPORT_ARGS[2:])
    cases = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgecv-kills-") as tmp:
        bench = prepare(Path(tmp))
        for mode in args.modes.split(","):
            stages, new = trace_stages(bench, mode)
            for sig in args.signals.split(","):
                for point in kill_points(stages):
                    cases.append(run_case(bench, new, mode=mode, stage=point, signal_name=sig))
    if args.json:
        print(json.dumps([asdict(c) for c in cases], indent=2))
        return 0
    print(table(cases))
    print(f"\n{len(cases)} kills in {time.perf_counter() - started:.0f} s; export: edgecv export SRC "
          f"{' '.join(EXPORT_ARGS)} into a copy of an old set of the same names (another seed) beside the user's files")
    bad = [c for c in cases if c.returncode != EXIT_BY_SIGNAL.get(c.signal) or c.accepted_mix or c.survived
           or not c.user_files or c.next_returncode != 0 or c.next_leftovers or c.next_held != "new"]
    print("cases where the signal did not stop the run, load accepts a mix, a process survives, a user file is lost "
          f"or the next run is not clean: {len(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
