"""The CLI: help with examples, one-line errors with non-zero exits, JSON for scripts, the main job."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def shapes_npz(tmp_path_factory):
    """240 labelled 16x16 shape images, the tiny Keras model's task."""
    import numpy as np

    from edgecv.synthetic import shape_images

    images, labels = shape_images(240, size=16, seed=5)
    path = tmp_path_factory.mktemp("train") / "shapes.npz"
    np.savez(path, x=images, y=labels)
    return path


def edgecv(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["", "demo", "export", "bench", "info", "qat", "prune", "distill", "detect", "track",
                                     "track-eval", "eval-det", "devices", "optimize"])
def test_help_shows_examples(command):
    proc = edgecv(*([command] if command else []), "--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["info", "missing.onnx"], 2, "edgecv: error: model file not found: missing.onnx"),
        (["info", "model.pt"], 2, "unknown model extension '.pt'"),
        (["bench", "missing.tflite"], 2, "model file not found"),
        (["export", "missing.keras"], 2, "model not found: missing.keras"),
        (["bench", "{tiny}", "--backend", "litert"], 2, "backend 'litert' cannot run onnx files"),
        (["bench", "{tiny}", "--runs", "0"], 2, "runs must be >= 1"),
        (["export", "{tiny}", "--to", "coreml"], 2, "unknown export format 'coreml'"),
        (["export", "{tiny}", "--samples", "0"], 2, "--samples must be at least 1"),
        (["prune", "{keras}", "--train", "{npz}", "--sparsity", "1.5", "--out", "{out}"], 2, "sparsity"),
        (["prune", "{keras}", "--train", "{npz}", "--method", "random", "--out", "{out}"], 2, "invalid choice: 'random'"),
        (["distill", "--teacher", "{keras}", "--train", "{npz}", "--temperature", "0", "--out", "{out}"], 2, "temperature"),
        (["qat", "{tiny}", "--train", "{npz}", "--out", "{out}"], 2, "Keras"),
        (["prune", "{keras}", "--train", "missing.npz", "--out", "{out}"], 2, "training data missing.npz not found"),
        ([], 2, "usage: edgecv"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_non_zero(tiny_onnx, tiny_keras_path, shapes_npz, tmp_path, args, code, message):
    fill = {"{tiny}": tiny_onnx, "{keras}": tiny_keras_path, "{npz}": shapes_npz, "{out}": tmp_path / "out"}
    proc = edgecv(*[fill.get(a, a) for a in args])
    assert proc.returncode == code
    assert message in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_info_json(tiny_onnx):
    proc = edgecv("info", tiny_onnx, "--backend", "openvino", "--json")
    info = json.loads(proc.stdout)
    assert proc.returncode == 0 and info["backend"] == "openvino"
    assert info["inputs"][0]["shape"] == [None, 3, 8, 8]


def test_bench_folder_side_by_side_and_json(tiny_onnx, tmp_path):
    import shutil

    shutil.copy(tiny_onnx, tmp_path / "a.onnx")
    shutil.copy(tiny_onnx, tmp_path / "b.onnx")
    (tmp_path / "notes.txt").write_text("ignored")
    table = edgecv("bench", tmp_path, "--runs", "5", "--warmup", "1", "--threads", "1")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["artifact", "backend", "precision"] and "p99 ms" in lines[0]
    assert [ln.split()[0] for ln in lines[2:4]] == ["a.onnx", "b.onnx"]
    results = json.loads(edgecv("bench", tmp_path / "a.onnx", "--runs", "5", "--json", "--backend", "openvino").stdout)
    assert results[0]["backend"] == "openvino" and results[0]["runs"] == 5


@pytest.mark.workstation
def test_export_json_and_exit_code(tiny_onnx, tmp_path):
    proc = edgecv("export", tiny_onnx, "--to", "onnx,openvino", "--precision", "fp32", "--out", tmp_path, "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"]
    assert sorted(a["format"] for a in report["artifacts"]) == ["onnx", "openvino"]


@pytest.mark.workstation
def test_demo_runs_the_main_job_end_to_end(tmp_path):
    """The README's main command: the built-in detector exported, scored, benchmarked, then tracking."""
    proc = edgecv("demo", "--out", tmp_path, "--runs", "3", "--frames", "300", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    baseline = json.loads((__import__("pathlib").Path(__file__).parents[1] / "baselines.json").read_text())
    assert report["ok"] and len(report["artifact_map"]) == 6
    assert report["keras_map"]["map50"] == pytest.approx(baseline["demo_keras_map50_seed1000_200"], abs=0.005)
    for name, m in report["artifact_map"].items():
        # mAP against the exact truth: fp32 matches Keras; int8 costs at most 1 point of mAP@[.5:.95]
        assert report["keras_map"]["map"] - m["map"] <= (0.01 if ".int8." in name else 0.002), name
    track = report["tracking"]
    assert track["frames"] == 300 and track["state"] == "ended" and track["capture"]["dropped"] == 0
    assert Path(track["model"]).parent == tmp_path / "artifacts" and len(track["model_choice"]) == 6
    metrics = track["tracking_metrics"]
    for key in ("mota", "idf1", "hota"):
        # the demo tracks with whichever artifact measured fastest, fp32 or int8: their detections differ slightly
        assert metrics[key] >= baseline[f"demo_track_{key}_seed7_300"] - 0.03, key
    assert set(track["stages"]) == {"capture", "inference", "decode", "tracking", "sinks"}
    assert all(st["frames"] == 300 for st in track["stages"].values())
    for name in ("report.md", "demo.json", "tracker.yaml", "artifacts/report.json", "track/synthetic_seed7.mp4",
                 "track/tracks.jsonl", "track/tracks.mot.txt", "track/gt.mot.txt", "track/summary.json"):
        assert (tmp_path / name).is_file(), name
    *frames, end = [json.loads(line) for line in (tmp_path / "track/tracks.jsonl").read_text().splitlines()]
    assert len(frames) == 300 and end == {"end": "ended", "frames": 300, "expected_frames": 300, "read_frames": 300,
                                          "message": None}


@pytest.mark.workstation
def test_demo_classify_exports_the_builtin_classifier(tmp_path):
    proc = edgecv("demo", "--task", "classify", "--out", tmp_path, "--runs", "3", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["ok"] and len(report["bench"]) == 9
    baseline = json.loads((__import__("pathlib").Path(__file__).parents[1] / "baselines.json").read_text())
    assert report["keras_top1"] >= baseline["builtin_shapes_top1_heldout_400"] - 0.03
    for path, top1 in report["accuracy"].items():
        # float artifacts lose nothing measurable; int8 stays within the default 1-point budget
        assert report["keras_top1"] - top1 <= (0.01 if ".int8." in path else 0.005), path
    assert sum(".int8." in p for p in report["accuracy"]) == 3
    for name in ("report.json", "report.md", "report.png", "demo.json"):
        assert (tmp_path / name).is_file(), name


@pytest.mark.workstation
def test_export_int8_writes_a_report_and_bad_calibration_fails_in_one_line(tiny_onnx, tmp_path):
    import numpy as np

    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3), dtype=np.uint8))
    out = tmp_path / "out"
    proc = edgecv("export", tiny_onnx, "--to", "onnx", "--quant", "none,int8", "--calib", calib, "--max-drop", "5",
                  "--mean", "127.5", "--std", "127.5", "--out", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "agree %" in proc.stdout and "int8" in proc.stdout
    assert {"report.json", "report.md", "report.png", "tiny.int8.onnx"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    assert [a["precision"] for a in report["artifacts"]] == ["fp32", "int8"]

    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 16, 16, 3), np.uint8))
    proc = edgecv("export", tiny_onnx, "--to", "onnx", "--quant", "int8", "--calib", bad, "--out", tmp_path / "bad_out")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "16x16" in proc.stderr
    assert not (tmp_path / "bad_out").exists()


def test_compression_recipe_distill_then_prune_then_cluster_then_qat(tiny_keras_path, shapes_npz, tmp_path):
    """The README's CLI recipe: each command's saved model is the next one's input, every figure is on --eval."""
    import numpy as np

    from edgecv.synthetic import shape_images

    images, labels = shape_images(20, size=16, seed=11)
    held_out = tmp_path / "held_out.npz"
    np.savez(held_out, x=images, y=labels)
    common = ["--train", shapes_npz, "--eval", held_out, "--epochs", "1", "--to", "onnx", "--runs", "3", "--json"]
    steps = [
        (["distill", "--teacher", tiny_keras_path, "--width", "0.5"], {"teacher", "student"}, "tiny.student.keras"),
        (["prune", "{previous}", "--method", "channels", "--sparsity", "0.5"], {"original", "channels"}, "tiny.student.channels.keras"),
        (["cluster", "{previous}", "--clusters", "16"], {"original", "cluster16"}, "tiny.student.channels.cluster16.keras"),
        (["qat", "{previous}"], {"float", "PTQ", "QAT"}, None),
    ]
    previous = None
    for i, (args, methods, saved) in enumerate(steps):
        out = tmp_path / f"step{i}"
        proc = edgecv(*[previous if a == "{previous}" else a for a in args], *common, "--out", out, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads(proc.stdout)
        assert {a["method"] for a in report["artifacts"]} == methods
        for a in report["artifacts"]:
            assert a["format"] == "onnx" and a["p50_ms"] > 0 and 0 < a["zipped_bytes"] < a["size_bytes"]
            assert abs(a["top1"] * len(labels) - round(a["top1"] * len(labels))) < 1e-6  # scored on the 20 --eval images, not a split of --train
        if args[0] == "distill":
            assert report["params_student"] < 0.5 * report["params_teacher"]
        if args[0] == "prune":
            assert report["params_after"] < report["params_before"] and report["flops_after"] < report["flops_before"]
        if args[0] == "cluster":
            assert max(report["unique_values"].values()) <= 16
        if args[0] == "qat":
            assert any(a["path"].endswith("tiny.student.channels.cluster16.qat-int8.onnx") for a in report["artifacts"])
        if saved:
            assert report["model"] == str(out / saved) and (out / saved).is_file()
            previous = out / saved
