"""``edgecv sweep``: a sweep file of 2 models x 2 devices x 2 recipes on the local executor, and its first model's
jobs on a real local Ray cluster, with the same results; resumed runs; a Ray worker killed mid-job; a job that fails
twice; bad sweep files refused in one line before any job starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgecv.errors import ConfigError
from tests.conftest import build_tiny_keras

pytestmark = pytest.mark.workstation
pytest.importorskip("tensorflow")

ONNX_BOARD = """\
name: onnx-board
description: a board that runs ONNX, float and int8
arch: aarch64
runtimes:
  onnxruntime: {providers: [CPUExecutionProvider]}
formats: [onnx]
precisions:
  fp32: {accelerated: true}
  int8: {accelerated: true}
preferred: {format: onnx, precision: int8}
"""

TFLITE_BOARD = """\
name: tflite-board
description: a board that runs TFLite float
arch: aarch64
runtimes:
  litert: {delegates: [xnnpack]}
formats: [tflite]
precisions:
  fp32: {accelerated: true}
preferred: {format: tflite, precision: fp32}
"""

SWEEP = """\
models:
  a: {file: a.keras}
  b: {file: b.keras}
devices: [onnx-board.yaml, tflite-board.yaml]
recipes:
  ptq: {kind: ptq}
  pruned: {kind: prune, sparsity: 0.5, epochs: 1}
data: {calib: calib.npy, eval: eval.npz, train: train.npz, calib_samples: 64}
budget: {max_drop: 5.0}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_keras_path):
    """Two small Keras models, calibration, eval and training data, two device profiles (not reachable, so
    the choice depends on accuracy and size alone, never on a timing)."""
    from edgecv.synthetic import shape_images

    root = tmp_path_factory.mktemp("sweep")
    (root / "a.keras").write_bytes(tiny_keras_path.read_bytes())
    build_tiny_keras(seed=1).save(root / "b.keras")
    calib, _ = shape_images(64, size=16, seed=7)
    np.save(root / "calib.npy", calib)
    for name, count, seed in (("eval.npz", 200, 1), ("train.npz", 240, 3)):
        x, y = shape_images(count, size=16, seed=seed)
        np.savez(root / name, x=x, y=y)
    (root / "onnx-board.yaml").write_text(ONNX_BOARD)
    (root / "tflite-board.yaml").write_text(TFLITE_BOARD)
    (root / "sweep.yaml").write_text(SWEEP)
    return root


def figures(result) -> list[tuple]:
    """Everything a sweep measured and chose, without paths, times or whether a job was resumed."""
    rows = []
    for row in result.chosen:
        rows.append((row["model"], row["device"], row["recipe"], row["candidate"], row["total_loss"], row["size_bytes"]))
        rows += [(row["model"], row["device"], o["recipe"], o.get("candidate"), o.get("total_loss"),
                  o.get("size_bytes"), o["why"]) for o in row["options"]]
    for job in result.jobs:
        r = job.result or {}
        if job.stage == "recipe":
            rows.append((job.name, r.get("top1_source"), r.get("top1"), r.get("params")))
        else:
            rows += [(job.name, c["format"], c["precision"], c["verdict"], c["drop_points"], c["size_bytes"])
                     for c in r.get("candidates") or []]
    return rows


@pytest.fixture(scope="module")
def local_run(folder, tmp_path_factory):
    from edgecv.converters.sweep import sweep

    out = tmp_path_factory.mktemp("local")
    return sweep(folder / "sweep.yaml", out=out, executor="local", workers=2), out


def test_the_local_executor_runs_every_job_and_chooses_per_model_and_device(local_run):
    result, out = local_run
    assert [j.status for j in result.jobs] == ["done"] * 10  # 2 prune jobs, then 2 x 2 x 2 device jobs
    assert [(j.stage, j.name) for j in result.jobs[:3]] == [("recipe", "a/pruned"), ("recipe", "b/pruned"),
                                                            ("device", "a/ptq/onnx-board")]
    assert [(r["model"], r["device"]) for r in result.chosen] == [("a", "onnx-board"), ("a", "tflite-board"),
                                                                  ("b", "onnx-board"), ("b", "tflite-board")]
    for row in result.chosen:
        assert row["artifact"] is not None and Path(row["artifact"]).is_file()
        assert Path(row["artifact"]).is_relative_to(out / "jobs" / row["model"] / row["recipe"] / row["device"])
        assert Path(row["artifact"] + ".json").is_file()  # its manifest came with it
        assert row["total_loss"] <= 5.0
        fits = [o for o in row["options"] if o["artifact"] and o["total_loss"] <= 5.0]
        # nothing benchmarked: the smallest option that fits the budget wins
        assert row["size_bytes"] == min(o["size_bytes"] for o in fits)
        assert {o["recipe"] for o in row["options"]} == {"ptq", "pruned"}
    pruned = next(j for j in result.jobs if j.name == "a/pruned")
    assert pruned.result["params"] < pruned.result["params_source"]
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["chosen"] == json.loads(json.dumps(result.chosen, default=str))
    md = (out / "sweep.md").read_text()
    assert "## Chosen, per model and device" in md and "| a | tflite-board |" in md
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_running_it_again_does_only_what_is_missing(local_run, folder):
    from edgecv.converters.sweep import sweep

    first, out = local_run
    again = sweep(folder / "sweep.yaml", out=out, executor="local", workers=2)
    assert [j.status for j in again.jobs] == ["resumed"] * 10
    assert figures(again) == figures(first)
    # one device job's record gone (as after a kill before it ended): that job alone runs again
    (out / "jobs" / "b" / "ptq" / "tflite-board" / "job.json").unlink()
    third = sweep(folder / "sweep.yaml", out=out, executor="local", workers=2)
    assert [j.name for j in third.jobs if j.status == "done"] == ["b/ptq/tflite-board"]
    assert figures(third) == figures(first)


def test_a_real_ray_cluster_gives_the_local_executors_results(local_run, folder, tmp_path):
    pytest.importorskip("ray")
    import signal

    from edgecv.converters.sweep import sweep

    # Model a alone (its 5 jobs of the local run's 10) keeps this test to half the sweep's time.
    (folder / "a_only.yaml").write_text(SWEEP.replace("  b: {file: b.keras}\n", ""))
    handlers = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    result = sweep(folder / "a_only.yaml", out=tmp_path / "ray", executor="ray", workers=2)
    # the cluster started here is gone, and the process's signal handlers are its own again
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers
    assert result.executor["executor"] == "ray" and result.executor["cluster_cpus"] == 2.0
    assert [j.status for j in result.jobs] == ["done"] * 5
    local = figures(local_run[0])
    of_a = [row for row in local if row[0] == "a" or row[0].startswith("a/")]
    assert len(of_a) < len(local) and figures(result) == of_a
    names = [Path(r["artifact"]).name for r in result.chosen]
    assert names == [Path(r["artifact"]).name for r in local_run[0].chosen if r["model"] == "a"]


def test_a_ray_worker_killed_during_a_job_is_retried_and_the_sweep_completes(folder, tmp_path):
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    (tmp_path / "one.yaml").write_text(f"""\
models: {{a: {{file: {folder / 'a.keras'}}}}}
devices: [{folder / 'onnx-board.yaml'}]
recipes: {{ptq: {{kind: ptq}}}}
data: {{calib: {folder / 'calib.npy'}, eval: {folder / 'eval.npz'}, calib_samples: 64}}
budget: {{max_drop: 5.0}}
""")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "edgecv", "sweep", str(tmp_path / "one.yaml"), "--out", str(out),
                             "--executor", "ray", "--workers", "2", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    killed = None
    attempts = out / "jobs" / "a" / "ptq" / "onnx-board" / "attempts"
    try:
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            if attempts.is_file():  # the job has started in its worker: kill that worker
                for p in psutil.process_iter(["cmdline"]):
                    if p.info["cmdline"] and p.info["cmdline"][0].startswith("ray::run_job"):
                        p.kill()
                        killed = p.pid
                        break
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, f"no Ray worker ran the job; stderr: {stderr[-2000:]}"
    assert proc.returncode == 0, stderr[-2000:]
    result = json.loads(stdout)
    (job,) = result["jobs"]
    assert job["status"] == "done" and job["attempts"] == 2
    assert result["chosen"][0]["artifact"] and Path(result["chosen"][0]["artifact"]).is_file()


def test_a_job_that_fails_twice_is_reported_and_the_others_go_on(folder, tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"not a model")
    text = (SWEEP.replace("b: {file: b.keras}", f"b: {{file: {tmp_path / 'broken.keras'}}}")
            .replace("a: {file: a.keras}", "a: {file: a.keras, recipes: [ptq]}")
            .replace("devices: [onnx-board.yaml, tflite-board.yaml]", "devices: [tflite-board.yaml]"))
    (folder / "broken.yaml").write_text(text)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "edgecv", "sweep", str(folder / "broken.yaml"), "--out", str(out),
                           "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    result = json.loads((out / "sweep.json").read_text())
    status = {j["model"] + "/" + j["recipe"] + ("/" + j["device"] if j["device"] else ""): (j["status"], j["attempts"])
              for j in result["jobs"]}
    assert status == {"b/pruned": ("failed", 2), "a/ptq/tflite-board": ("done", 1), "b/ptq/tflite-board": ("failed", 2),
                      "b/pruned/tflite-board": ("skipped", 0)}
    assert "b/pruned/tflite-board: skipped: its pruned job failed" in proc.stdout
    chosen = {(r["model"], r["device"]): r["artifact"] for r in result["chosen"]}
    assert chosen[("a", "tflite-board")] is not None and chosen[("b", "tflite-board")] is None


def test_a_qat_recipe_chooses_among_its_own_int8_artifacts_per_device(folder, tmp_path):
    from edgecv.converters.sweep import sweep

    (folder / "qat.yaml").write_text(SWEEP.replace("  b: {file: b.keras}\n", "").replace("  ptq: {kind: ptq}\n", "")
                                     .replace("pruned: {kind: prune, sparsity: 0.5, epochs: 1}", "tuned: {kind: qat, epochs: 1}"))
    result = sweep(folder / "qat.yaml", out=tmp_path / "out", workers=2)
    assert [(j.name, j.status) for j in result.jobs] == [
        ("a/tuned", "done"), ("a/tuned/onnx-board", "done"), ("a/tuned/tflite-board", "done")]
    made = result.jobs[0].result
    assert set(made["artifacts"]) == {"tflite", "onnx", "openvino"}
    onnx = next(j for j in result.jobs if j.name == "a/tuned/onnx-board").result
    # the onnx board runs int8 ONNX only: one candidate, the QAT artifact itself, scored against the source model
    (c,) = onnx["candidates"]
    assert (c["format"], c["precision"], c["path"]) == ("onnx", "int8", made["artifacts"]["onnx"])
    assert c["drop_points"] == pytest.approx(100 * (made["top1_source"] - made["top1_by_format"]["onnx"]), abs=1e-6)
    assert c["compat"]["ok"] and onnx["chosen"]["path"] == c["path"]
    tflite = next(j for j in result.jobs if j.name == "a/tuned/tflite-board").result
    assert tflite["chosen"] is None and tflite["candidates"] == []
    options = {(r["device"], o["recipe"]): o for r in result.chosen for o in r["options"]}
    assert options[("tflite-board", "tuned")]["why"] == "tflite-board runs no int8 tflite, onnx, openvino"
    assert options[("onnx-board", "tuned")]["recipe_loss"] == 0.0  # folded into the artifact's own loss
    assert options[("onnx-board", "tuned")]["quant_loss"] == c["drop_points"]


BAD = [
    # (what is changed, the text it becomes, the error expected)
    ("models:", "modelz:", r"sweep\.yaml line 1: unknown field 'modelz' \(did you mean 'models'\?\); valid fields: models,"),
    ("a: {file: a.keras}", "a: {file: a.keras, sparsity: 0.5}", r"line 2: unknown field 'sparsity' in models\.a; valid fields: file,"),
    ("[onnx-board.yaml, tflite-board.yaml]", "[onnx-board.yaml, pi-zero]",
     r"line 4: devices: unknown device 'pi-zero'; known devices: android-phone,"),
    ("[onnx-board.yaml, tflite-board.yaml]", "[onnx-board.yaml, onnx-board.yaml]", r"devices: 'onnx-board' appears twice"),
    ("calib: calib.npy", "calib: frames/", r"line 8: data\.calib: not found: .*frames"),
    ("a: {file: a.keras}", "a: {file: gone.keras}", r"line 2: models\.a\.file: not found: .*gone\.keras"),
    ("{kind: prune, sparsity: 0.5, epochs: 1}", "{kind: clustering}",
     r"line 7: recipes\.pruned\.kind: unknown recipe kind 'clustering'; valid kinds: ptq, prune, distill, cluster, qat$"),
    ("{kind: prune, sparsity: 0.5, epochs: 1}", "{kind: prune, width: 0.5}",
     r"recipes\.pruned: a prune recipe takes epochs, sparsity, method; got width"),
    ("{kind: prune, sparsity: 0.5, epochs: 1}", "{kind: prune, sparsity: 1.5}",
     r"recipes\.pruned: sparsity: expected a value in \[0, 1\), got 1\.5"),
    ("{kind: prune, sparsity: 0.5, epochs: 1}", "{kind: cluster, clusters: 1}",
     r"recipes\.pruned: clusters: expected an integer from 2 to 256, got 1"),
    ("{kind: prune, sparsity: 0.5, epochs: 1}", "{kind: qat, sparsity: 0.5}",
     r"recipes\.pruned: a qat recipe takes epochs; got sparsity"),
    ("{kind: prune, sparsity: 0.5, epochs: 1}", "{kind: prune, method: random}",
     r"recipes\.pruned: method: unknown pruning method 'random'"),
    ("train: train.npz, ", "", r"data: recipe\(s\) pruned train: give data\.train"),
    ("calib: calib.npy, ", "", r"data: device\(s\) onnx-board run int8: give data\.calib"),
    ("budget: {max_drop: 5.0}", "budget: {max_drop: -1}", r"line 9: budget\.max_drop: expected points >= 0, got -1"),
    ("budget: {max_drop: 5.0}", "budget: {max_drop: 5.0}\nresources: {cpus: 0}", r"resources\.cpus: expected a number > 0"),
    ("  b: {file: b.keras}", "  b/c: {file: b.keras}", r"models\.b/c: expected a name of letters, digits"),
    ("budget: {max_drop: 5.0}", "budget: [5]", r"budget: expected a mapping"),
    ("a: {file: a.keras}", "a: {file: a.keras, recipes: [ptq, pruning]}",
     r"line 2: models\.a\.recipes: unknown recipe\(s\) pruning; the file's recipes: ptq, pruned"),
    ("a: {file: a.keras}", "a: {file: calib.npy}",
     r"line 2: models\.a: recipe\(s\) pruned train a Keras model \(\.keras, \.h5\) and calib\.npy is not one"),
]


@pytest.mark.parametrize("old, new, error", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_sweep_files_are_one_line_before_any_job_starts(folder, tmp_path, old, new, error):
    from edgecv.converters.sweep import sweep

    assert old in SWEEP
    work = tmp_path / "work"
    work.mkdir()
    for f in folder.iterdir():
        if f.suffix in (".keras", ".npy", ".npz") or f.name.endswith("board.yaml"):
            os.symlink(f, work / f.name)
    (work / "sweep.yaml").write_text(SWEEP.replace(old, new))
    with pytest.raises(ConfigError, match=error) as caught:
        sweep(work / "sweep.yaml", out=tmp_path / "out")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spec, error", [
    ("slurm", r"executor: unknown 'slurm'; valid: local, ray, auto, ray://HOST:PORT"),
    ("ray --workers 0", r"workers: expected an integer >= 1, got 0"),
    ("ray://", r"ray address: expected auto or ray://HOST:PORT, got 'ray://'"),
    ("ray://head.lan:10001", None),
])
def test_executors_are_named_in_one_table(spec, error):
    from edgecv.converters.executors import EXECUTORS, make_executor

    assert list(EXECUTORS) == ["local", "ray"]
    name, _, workers = spec.partition(" --workers ")
    if error is None:
        assert make_executor(name).address == name
    else:
        with pytest.raises(ConfigError, match=error):
            make_executor(name, workers=int(workers) if workers else None)


def test_no_ray_cluster_to_join_is_one_line(folder, tmp_path):
    pytest.importorskip("ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-m", "edgecv", "sweep", str(folder / "sweep.yaml"), "--out",
                           str(tmp_path / "out"), "--executor", "auto"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("edgecv: error: cannot reach the Ray cluster at auto: ")
