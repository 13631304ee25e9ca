"""Every corpus model through every step, as a user runs it: the conformance matrix.

    .venv/bin/python benchmarks/conformance.py [--models a,b] [--steps info,bench,...] [--quick] [--out DIR] [--json]

Each cell is one ``edgecv`` command line in its own process, with a timeout:

- ``info``     ``edgecv info MODEL --json``
- ``bench``    ``edgecv bench MODEL --runs 5 --warmup 1 --json`` (``--input-shape`` for dynamic models)
- ``devices``  ``edgecv devices check MODEL --device ci-x86-64-avx2 --json``
- ``detect``   ``edgecv detect --model MODEL --spec SPEC --source DATA --max-frames 5`` where a built-in spec
  applies (an exact name from the corpus table, or the one built-in spec whose name holds its keywords)
- ``export``   ``edgecv export MODEL --to tflite,onnx,openvino --quant none,fp16,int8 --calib DATA ...``: one
  process per model, in an empty working folder of its own, one cell per artifact row of its report.json
  (``export:onnx:int8`` ...), plus an ``export:cwd`` cell when it left files in that working folder.

A cell is **ok** (exit 0 and the promised output: parseable JSON, predictions.json, an artifact file on disk
that ``edgecv info`` loads), **refused** (exit non-zero with exactly one line on stderr, no traceback; or an
export row that failed with a one-line reason; shown as ``gate`` when the artifact was built and then kept out
by the accuracy gate, in OUT/_failed/) or **FAILED** (a traceback, a signal, a timeout, several lines, exit 0
without the output, a report row "passed" without a file, an artifact edgecv wrote that its runtime cannot
load ...). Known runtime log noise on stderr
(LiteRT's XNNPACK line, absl/TensorFlow C++ logs, the TFLite converter's debug print) is not counted.
``--quick`` runs the cheap steps only (no export). The matrix is printed and written, with every command and
its output, to OUT/results.json and OUT/logs/.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import CORPUS, DEFAULT_CORPUS, REPO, SHARED_DATA, Entry, missing, model_path  # noqa: E402

STEPS = ("info", "bench", "devices", "detect", "export")
QUICK_STEPS = ("info", "bench", "devices", "detect")
EXPORT_FORMATS = ("tflite", "onnx", "openvino")
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
DEVICE = "ci-x86-64-avx2"
TIMEOUTS = {"info": 120, "bench": 300, "devices": 120, "detect": 300, "export": 1800}
OK, REFUSED, FAILED, NA = "ok", "refused", "FAILED", "n/a"
# A failed export row whose reason says edgecv's own artifact would not load is edgecv's failure, not a refusal.
BROKEN_OUTPUT = ("[ONNXRuntimeError]", "cannot load ")

# Lines third-party runtimes write to stderr by themselves; everything else there counts.
NOISE = tuple(re.compile(p) for p in (
    r"^INFO: Created TensorFlow Lite XNNPACK delegate",
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"^[IWE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ ",  # absl / glog
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] ",  # TensorFlow C++
    r"^fully_quantize: \d, inference_type: ",  # the TFLite converter's calibration print
    r"^\s*$",
))


@dataclass
class Cell:
    model: str
    step: str  # info, bench, devices, detect, export:FORMAT:PRECISION
    status: str
    reason: str = ""
    command: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Run:
    returncode: int | None  # None: timed out
    stdout: str
    stderr_lines: list[str]  # noise removed
    noise_lines: int
    seconds: float
    command: list[str]


def edgecv_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgecv", *args]


def run(cmd: list[str], timeout: float, log: Path | None = None, cwd: Path | None = None) -> Run:
    """Run one command in its own process group; on timeout the whole group is killed."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    except BaseException:  # Ctrl-C or SIGTERM: the cell's process group (export workers too) goes with us
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    seconds = time.perf_counter() - start
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(cmd)}\n# exit {code} after {seconds:.1f} s\n--- stdout\n{out}\n--- stderr\n{err}")
    lines = err.splitlines()
    kept = [ln for ln in lines if not any(p.search(ln) for p in NOISE)]
    return Run(code, out, kept, len(lines) - len(kept), seconds, cmd)


def judge(r: Run, timeout: float) -> tuple[str, str] | None:
    """(status, reason) for a run that did not exit 0 cleanly; None when it exited 0 (the caller checks output)."""
    text = "\n".join(r.stderr_lines)
    if r.returncode is None:
        return FAILED, f"timeout after {timeout:.0f} s"
    if "Traceback (most recent call last)" in text:
        last = [ln for ln in r.stderr_lines if ln.strip() and not ln.startswith(" ")]
        return FAILED, f"traceback: {last[-1] if last else '?'}"
    if r.returncode < 0:
        return FAILED, f"killed by signal {-r.returncode}"
    if r.returncode == 0:
        return None
    if r.returncode == 2 and any(ln.startswith("usage:") for ln in r.stderr_lines):
        error = next((ln for ln in r.stderr_lines if ": error: " in ln), r.stderr_lines[-1])
        return FAILED, f"the CLI rejected the options: {error.split(': error: ', 1)[-1]}"
    if len(r.stderr_lines) == 1:
        return REFUSED, r.stderr_lines[0]
    if not r.stderr_lines:
        return FAILED, f"exit {r.returncode} with nothing on stderr"
    return FAILED, f"exit {r.returncode} with {len(r.stderr_lines)} lines on stderr, last: {r.stderr_lines[-1]}"


def parse_json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


# --- data -------------------------------------------------------------------------------------------------


def _idx(path: Path):
    import numpy as np

    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def _faces(photo: Path, folder: Path) -> Path:
    """An eval folder for face and pose detectors: the one real face photo, mirrored, cropped and shrunk."""
    import cv2
    import numpy as np

    if folder.is_dir() and len(list(folder.glob("*.png"))) == 4:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    image = cv2.imread(str(photo))
    h, w = image.shape[:2]
    pad = np.full((h * 2, w * 2, 3), 114, np.uint8)
    pad[h // 2:h // 2 + h, w // 4:w // 4 + w] = image  # the face at half its size, off centre
    for name, img in {"photo": image, "mirror": image[:, ::-1], "crop": image[h // 10:h - h // 10, w // 10:w - w // 10],
                      "small": pad}.items():
        cv2.imwrite(str(folder / f"{name}.png"), img)
    return folder


def data_sources(work: Path) -> dict[str, Path]:
    """The real data each corpus key names; MNIST arrays are written into ``work`` once."""
    import numpy as np

    models = SHARED_DATA / "models"
    sources = {
        "vtest": SHARED_DATA / "video" / "vtest.avi",
        "sergey": models / "blazeface_golden" / "sergey.png",
        "table": models / "ssd_mobilenet_v1_coco_quant" / "table.jpg",
    }
    if sources["sergey"].is_file():
        sources["faces"] = _faces(sources["sergey"], work / "faces")
    images = SHARED_DATA / "mnist" / "t10k-images-idx3-ubyte.gz"
    labels = SHARED_DATA / "mnist" / "t10k-labels-idx1-ubyte.gz"
    if images.is_file() and labels.is_file():
        calib, evaluation = work / "mnist_calib.npz", work / "mnist_eval.npz"
        if not (calib.is_file() and evaluation.is_file()):
            work.mkdir(parents=True, exist_ok=True)
            x, y = _idx(images), _idx(labels)
            # The project's MNIST convention: 0..7999 train/calibrate, 8000..9999 evaluate.
            np.savez(calib, x=x[:300])
            np.savez(evaluation, x=x[8000:8500], y=y[8000:8500].astype(np.int64))
        sources["mnist-calib"], sources["mnist-eval"] = calib, evaluation
    return sources


# --- specs ------------------------------------------------------------------------------------------------


def builtin_specs() -> list[str]:
    """Built-in detector spec names: ``edgecv specs list --json`` where it exists, else the package folder."""
    r = run(edgecv_cmd("specs", "list", "--json"), 60)
    listed = parse_json(r.stdout) if r.returncode == 0 else None
    if isinstance(listed, list):
        return sorted(str(s["name"] if isinstance(s, dict) else s) for s in listed)
    if isinstance(listed, dict) and isinstance(listed.get("specs"), list):
        return sorted(str(s["name"] if isinstance(s, dict) else s) for s in listed["specs"])
    return sorted(p.stem for p in (REPO / "edgecv" / "detection" / "specs").glob("*.yaml"))


def resolve_spec(entry: Entry, specs: list[str]) -> str | None:
    if entry.spec:
        return entry.spec if entry.spec in specs else None
    if not entry.spec_keywords:
        return None
    hits = [s for s in specs if all(k in s for k in entry.spec_keywords)]
    return hits[0] if len(hits) == 1 else None


# --- the steps --------------------------------------------------------------------------------------------


@dataclass
class Context:
    corpus: Path
    out: Path
    data: dict[str, Path]
    specs: list[str]
    device: str = DEVICE
    runs: int = 5


def _cell(entry: Entry, step: str, r: Run, timeout: float, check) -> Cell:
    verdict = judge(r, timeout)
    if verdict is None:
        problem = check(r)
        verdict = (FAILED, problem) if problem else (OK, "")
    return Cell(entry.name, step, verdict[0], verdict[1], r.command, round(r.seconds, 2))


def step_info(entry: Entry, path: Path, ctx: Context) -> list[Cell]:
    r = run(edgecv_cmd("info", str(path), "--json"), TIMEOUTS["info"], ctx.out / "logs" / entry.name / "info.txt")

    def check(r: Run) -> str | None:
        info = parse_json(r.stdout)
        if not isinstance(info, dict) or not info.get("inputs") or not info.get("outputs"):
            return "exit 0 without JSON inputs and outputs"
        return None

    return [_cell(entry, "info", r, TIMEOUTS["info"], check)]


def step_bench(entry: Entry, path: Path, ctx: Context) -> list[Cell]:
    args = ["bench", str(path), "--runs", str(ctx.runs), "--warmup", "1", "--json"]
    if entry.input_shape:
        args += ["--input-shape", entry.input_shape]
    r = run(edgecv_cmd(*args), TIMEOUTS["bench"], ctx.out / "logs" / entry.name / "bench.txt")

    def check(r: Run) -> str | None:
        rows = parse_json(r.stdout)
        if not isinstance(rows, list) or len(rows) != 1:
            return "exit 0 without one JSON result"
        p50 = rows[0].get("p50_ms")
        if not isinstance(p50, (int, float)) or not math.isfinite(p50) or p50 <= 0:
            return f"exit 0 with p50_ms {p50!r}"
        return None

    return [_cell(entry, "bench", r, TIMEOUTS["bench"], check)]


def step_devices(entry: Entry, path: Path, ctx: Context) -> list[Cell]:
    r = run(edgecv_cmd("devices", "check", str(path), "--device", ctx.device, "--json"), TIMEOUTS["devices"],
            ctx.out / "logs" / entry.name / "devices.txt")
    report = parse_json(r.stdout)
    if r.returncode == 1 and isinstance(report, dict) and report.get("blockers"):
        # A valid answer ("it cannot run there"), though for the machine it runs on a surprising one.
        first = report["blockers"][0]
        msg = first.get("message", str(first)) if isinstance(first, dict) else str(first)
        return [Cell(entry.name, "devices", REFUSED, f"blocker on {ctx.device}: {msg}", r.command, round(r.seconds, 2))]

    def check(r: Run) -> str | None:
        if not isinstance(report, dict) or "blockers" not in report:
            return "exit 0 without a JSON report"
        return None

    return [_cell(entry, "devices", r, TIMEOUTS["devices"], check)]


def step_detect(entry: Entry, path: Path, ctx: Context) -> list[Cell]:
    spec = resolve_spec(entry, ctx.specs)
    if spec is None or entry.detect_source is None:
        why = "not a detector" if entry.kind != "detector" else f"no built-in spec yet ({entry.spec or '+'.join(entry.spec_keywords)})"
        return [Cell(entry.name, "detect", NA, why)]
    source = ctx.data.get(entry.detect_source)
    if source is None or not source.exists():
        return [Cell(entry.name, "detect", NA, f"data {entry.detect_source!r} is missing")]
    out = ctx.out / "detect" / entry.name
    shutil.rmtree(out, ignore_errors=True)
    args = ["detect", "--model", str(path), "--spec", spec, "--source", str(source), "--out", str(out),
            "--max-frames", "5", "--json"]
    if entry.labels:
        args += ["--labels", str(SHARED_DATA / "models" / entry.labels)]
    r = run(edgecv_cmd(*args), TIMEOUTS["detect"], ctx.out / "logs" / entry.name / "detect.txt")

    def check(r: Run) -> str | None:
        summary = parse_json(r.stdout)
        if not isinstance(summary, dict) or not summary.get("frames"):
            return "exit 0 without a JSON summary of at least one frame"
        if not (out / "predictions.json").is_file():
            return "exit 0 without predictions.json"
        lines = (out / "detections.jsonl").read_text().splitlines() if (out / "detections.jsonl").is_file() else []
        if len(lines) != summary["frames"]:
            return f"detections.jsonl has {len(lines)} lines for {summary['frames']} frames"
        return None

    cell = _cell(entry, "detect", r, TIMEOUTS["detect"], check)
    if cell.status == OK:
        summary = parse_json(r.stdout)
        cell.reason = f"{spec}: {summary.get('detections')} detections in {summary.get('frames')} frames"
    return [cell]


def export_args(entry: Entry, path: Path, ctx: Context, out: Path) -> list[str]:
    args = ["export", str(path), "--to", ",".join(EXPORT_FORMATS), "--quant", "none,fp16,int8",
            "--out", str(out), "--json", "--calib-samples", "32", "--eval-samples", "32", "--samples", "4",
            "--mean", ",".join(f"{v:g}" for v in entry.mean), "--std", ",".join(f"{v:g}" for v in entry.std),
            "--color", entry.color]
    calib = ctx.data.get(entry.calib)
    if calib is not None:
        args += ["--calib", str(calib)]
    if entry.eval and ctx.data.get(entry.eval) is not None:
        args += ["--eval", str(ctx.data[entry.eval])]
    if entry.input_shape:
        args += ["--input-shape", entry.input_shape]
    spec = resolve_spec(entry, ctx.specs)
    if spec:
        args += ["--spec", spec]
    if entry.labels:
        args += ["--labels", str(SHARED_DATA / "models" / entry.labels)]
    return args


def _artifact_loads(artifact: Path, ctx: Context, log: Path) -> str | None:
    r = run(edgecv_cmd("info", str(artifact), "--json"), TIMEOUTS["info"], log)
    verdict = judge(r, TIMEOUTS["info"])
    if verdict is not None:
        return f"passed, but 'edgecv info' on it: {verdict[1]}"
    return None if isinstance(parse_json(r.stdout), dict) else "passed, but 'edgecv info' printed no JSON"


def step_export(entry: Entry, path: Path, ctx: Context) -> list[Cell]:
    out = ctx.out / "export" / entry.name
    shutil.rmtree(out, ignore_errors=True)
    logs = ctx.out / "logs" / entry.name
    # An empty working folder of its own: whatever the export leaves there (temporary files) is reported.
    cwd = ctx.out / "cwd" / entry.name
    shutil.rmtree(cwd, ignore_errors=True)
    cwd.mkdir(parents=True)
    r = run(edgecv_cmd(*export_args(entry, path, ctx, out)), TIMEOUTS["export"], logs / "export.txt", cwd=cwd)
    litter = sorted(p.name for p in cwd.iterdir())
    if litter:
        cell = Cell(entry.name, "export:cwd", FAILED, f"left {len(litter)} files in the working folder: "
                    f"{', '.join(litter[:3])}{' ...' if len(litter) > 3 else ''}", r.command, round(r.seconds, 2))
        return [cell, *_export_cells(entry, out, r, ctx, logs)]
    return _export_cells(entry, out, r, ctx, logs)


def _export_cells(entry: Entry, out: Path, r: Run, ctx: Context, logs: Path) -> list[Cell]:
    steps = [f"export:{f}:{p}" for f in EXPORT_FORMATS for p in EXPORT_PRECISIONS]
    verdict = judge(r, TIMEOUTS["export"])
    report = parse_json((out / "report.json").read_text()) if (out / "report.json").is_file() else None
    if report is None or verdict is not None and verdict[0] == FAILED and "traceback" in verdict[1]:
        status, reason = verdict or (FAILED, "exit 0 without report.json")
        return [Cell(entry.name, s, status, reason, r.command, round(r.seconds, 2)) for s in steps]
    return export_cells(entry.name, report, r,
                        lambda a, fmt, prec: _artifact_loads(a, ctx, logs / f"info.{fmt}.{prec}.txt"))


def export_cells(model: str, report: dict, r: Run, loads) -> list[Cell]:
    """One cell per format x precision from an export's report.json and exit code.

    ``loads(path, format, precision)`` says why a written artifact does not load, or None.
    """
    rows = {(a.get("format"), a.get("precision")): a for a in report.get("artifacts", [])}
    cells = []
    for fmt in EXPORT_FORMATS:
        for precision in EXPORT_PRECISIONS:
            row = rows.get((fmt, precision))
            cell = Cell(model, f"export:{fmt}:{precision}", FAILED, "", r.command, round(r.seconds, 2))
            if row is None:
                cell.reason = "no row in report.json"
            elif row.get("status") == "passed":
                artifact = Path(row["path"]) if row.get("path") else None
                if artifact is None:
                    cell.reason = f"report.json says passed with path null ({row.get('reason') or 'no reason'})"
                elif not artifact.is_file():
                    cell.reason = f"report.json says passed but {artifact.name} is not on disk"
                elif r.returncode != 0 and report.get("ok"):
                    cell.reason = f"exit {r.returncode} though report.json says ok"
                else:
                    problem = loads(artifact, fmt, precision)
                    cell.status, cell.reason = (FAILED, problem) if problem else (OK, _figures(row))
            else:
                reason = str(row.get("reason") or "")
                if r.returncode == 0:
                    cell.reason = f"exit 0 though this row {row.get('status')}: {reason}"
                elif "\n" in reason.strip() or "Traceback" in reason or not reason:
                    cell.reason = f"row {row.get('status')} without a one-line reason: {reason[:200]!r}"
                elif any(marker in reason for marker in BROKEN_OUTPUT):
                    cell.reason = f"the artifact edgecv wrote is broken: {reason}"
                elif row.get("path") and not Path(row["path"]).is_file():
                    cell.reason = f"the gated artifact {Path(row['path']).name} is not on disk: {reason}"
                elif row.get("path"):  # built, then kept out by the accuracy gate (moved to _failed/)
                    cell.status, cell.reason = REFUSED, f"gate: {reason}"
                else:
                    cell.status, cell.reason = REFUSED, reason
            cells.append(cell)
    return cells


def _figures(row: dict) -> str:
    scores = row.get("scores") or {}
    parts = [f"{row.get('size_bytes', 0) / 1e6:.2f} MB"]
    if isinstance(row.get("p50_ms"), (int, float)):
        parts.append(f"p50 {row['p50_ms']:.2f} ms")
    if isinstance(scores.get("sqnr_db"), (int, float)):
        parts.append(f"SQNR {scores['sqnr_db']:.1f} dB")
    if isinstance(scores.get("top1"), (int, float)):
        parts.append(f"top-1 {100 * scores['top1']:.1f}% of {scores.get('samples')}")
    if isinstance(scores.get("detection_f1"), (int, float)):
        parts.append(f"detection F1 {scores['detection_f1']:.2f}")
    if row.get("fallback") and row["fallback"].get("layers"):
        parts.append(f"{len(row['fallback']['layers'])} layers float")
    return ", ".join(parts)


STEP_FUNCS = {"info": step_info, "bench": step_bench, "devices": step_devices, "detect": step_detect,
              "export": step_export}


def run_model(entry: Entry, steps: tuple[str, ...], ctx: Context) -> list[Cell]:
    why = missing(entry, ctx.corpus)
    if why is not None:
        names = [s for s in steps if s != "export"] + ([f"export:{f}:{p}" for f in EXPORT_FORMATS
                                                          for p in EXPORT_PRECISIONS] if "export" in steps else [])
        return [Cell(entry.name, s, NA, why) for s in names]
    path = model_path(entry, ctx.corpus)
    cells: list[Cell] = []
    for step in steps:
        cells += STEP_FUNCS[step](entry, path, ctx)
    return cells


# --- output -----------------------------------------------------------------------------------------------

SHORT = {OK: "ok", REFUSED: "ref", FAILED: "FAIL", NA: "-"}


def matrix(cells: list[Cell]) -> str:
    models = list(dict.fromkeys(c.model for c in cells))
    steps = list(dict.fromkeys(c.step for c in cells))
    heads = [s.replace("export:", "").replace("tflite", "tfl").replace("openvino", "ov").replace(":", " ")
             for s in steps]
    grid = {(c.model, c.step): c for c in cells}
    rows = [["model", *heads]]

    def short(c: Cell) -> str:
        return "gate" if c.status == REFUSED and c.reason.startswith("gate: ") else SHORT[c.status]

    for m in models:
        rows.append([m, *[short(grid[(m, s)]) if (m, s) in grid else "" for s in steps]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    counts = {k: sum(c.status == k for c in cells) for k in (OK, REFUSED, FAILED, NA)}
    gated = sum(c.status == REFUSED and c.reason.startswith("gate: ") for c in cells)
    lines.append(f"\n{counts[OK]} ok, {counts[REFUSED]} refused ({gated} of them built but kept out by the accuracy "
                 f"gate: 'gate'), {counts[FAILED]} FAILED, {counts[NA]} not applicable ('-')")
    return "\n".join(lines)


def details(cells: list[Cell]) -> str:
    lines = []
    found = [c for c in cells if c.step == "detect" and c.status == OK]
    if found:
        lines.append("\ndetect:")
        lines += [f"  {c.model}: {c.reason}" for c in found]
    for status in (FAILED, REFUSED):
        picked = [c for c in cells if c.status == status]
        if picked:
            lines.append(f"\n{status}:")
            lines += [f"  {c.model} {c.step}: {c.reason}" for c in picked]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", help="comma-separated corpus names (default: all)")
    p.add_argument("--steps", help=f"comma-separated steps of {','.join(STEPS)} (default: all)")
    p.add_argument("--quick", action="store_true", help=f"cheap steps only: {','.join(QUICK_STEPS)}")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help=f"corpus folder (default {DEFAULT_CORPUS})")
    p.add_argument("--device", default=DEVICE, help=f"device profile for 'devices check' (default {DEVICE})")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "conformance", help="results, logs and artifacts")
    p.add_argument("--json", action="store_true", help="print the cells as JSON")
    p.add_argument("--resume", action="store_true", help="keep the models already in OUT/results.json")
    args = p.parse_args(argv)

    steps = QUICK_STEPS if args.quick else STEPS
    if args.steps:
        steps = tuple(s.strip() for s in args.steps.split(","))
        unknown = [s for s in steps if s not in STEPS]
        if unknown:
            p.error(f"unknown steps {unknown}; choose from {','.join(STEPS)}")
    entries = list(CORPUS)
    if args.models:
        names = [n.strip() for n in args.models.split(",")]
        known = {e.name for e in CORPUS}
        if any(n not in known for n in names):
            p.error(f"unknown models {[n for n in names if n not in known]}; known: {','.join(sorted(known))}")
        entries = [e for e in CORPUS if e.name in names]

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out, args.corpus = args.out.resolve(), args.corpus.resolve()  # exports run in a folder of their own
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args.corpus, args.out, data_sources(args.out / "data"), builtin_specs(), device=args.device)
    cells: list[Cell] = []
    results = args.out / "results.json"
    if args.resume and results.is_file():
        cells = [Cell(**c) for c in json.loads(results.read_text())["cells"]]
        done_models = {c.model for c in cells}
        entries = [e for e in entries if e.name not in done_models]
    for entry in entries:
        done = run_model(entry, steps, ctx)
        cells += done
        # partial results stay on disk as the run goes (--resume goes on from them)
        results.write_text(json.dumps({"specs": ctx.specs, "cells": [asdict(c) for c in cells]}, indent=1))
        if not args.json:
            failed = sum(c.status == FAILED for c in done)
            seconds = sum({tuple(c.command): c.seconds for c in done}.values())
            print(f"{entry.name}: {len(done) - failed} cells fine, {failed} FAILED ({seconds:.0f} s)",
                  file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps([asdict(c) for c in cells], indent=1))
    else:
        print(matrix(cells))
        print(details(cells))
    return 1 if any(c.status == FAILED for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
