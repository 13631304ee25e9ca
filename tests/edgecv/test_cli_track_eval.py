"""``edgecv track-eval``: the table, JSON, a tracker run on MOT15 detections, one-line errors with exit code 2."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from edgecv.tracking.evaluate import evaluate_tracking
from edgecv.tracking.mot import format_rows, read_mot

pytest.importorskip("trackeval")


def edgecv(*args):
    return subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tud(shared_data, tmp_path_factory):
    """TUD-Campus ground truth, and tracker output synthesized from it: jittered boxes, missed boxes, an ID switch."""
    root = tmp_path_factory.mktemp("track_eval")
    gt = shared_data / "mot15" / "TUD-Campus" / "gt.txt"
    rng = np.random.default_rng(5)
    rows = read_mot(gt, kind="gt").rows.copy()
    rows = rows[rng.random(len(rows)) > 0.1]
    rows[:, 2:6] = (rows[:, 2:6] + rng.normal(0, 3, (len(rows), 4))).round(2)
    rows[:, 6] = 0.9
    late = rows[:, 0] > 35
    rows[late & (rows[:, 1] == 1), 1], rows[late & (rows[:, 1] == 3), 1] = 3, 1
    (root / "tracks.txt").write_text(format_rows(rows))
    return {"gt": gt, "det": gt.parent / "det.txt", "tracks": root / "tracks.txt", "root": root}


def test_help_shows_examples():
    proc = edgecv("track-eval", "--help")
    assert proc.returncode == 0
    assert "examples:" in proc.stdout and "--tracker bytetrack" in proc.stdout
    assert "track-eval" in edgecv("--help").stdout


def test_table(tud):
    proc = edgecv("track-eval", "--gt", tud["gt"], "--tracks", tud["tracks"])
    assert proc.returncode == 0, proc.stderr
    m = evaluate_tracking(tud["gt"], tud["tracks"])
    header, rule, values = proc.stdout.splitlines()[:3]
    assert header.split() == ["HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDsw", "FP", "FN", "MT", "ML"]
    expected = [f"{100 * v:.2f}" for v in (m.hota, m.deta, m.assa, m.mota, m.motp, m.idf1)]
    assert values.split() == expected + [str(v) for v in (m.idsw, m.fp, m.fn, m.mt, m.ml)]
    assert m.idsw >= 1 and m.fn > 0
    assert "TUD-Campus: 71 frames, 8 ground-truth tracks (359 boxes)" in proc.stdout
    assert "MOT15 rules" in proc.stdout and proc.stderr == ""


def test_json(tud):
    proc = edgecv("track-eval", "--gt", tud["gt"], "--tracks", tud["tracks"], "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc == {
        "ground_truth": str(tud["gt"]), "tracks": str(tud["tracks"]), "det": None, "out": None,
        **evaluate_tracking(tud["gt"], tud["tracks"]).to_dict(),
    }


def test_sort_on_detections_matches_the_reference(tud):
    """shared/data/README.md: SORT with defaults scores TUD-Campus MOTA 62.7 (FP 15, FN 113, IDsw 6), HOTA 45.3."""
    out = tud["root"] / "sort.txt"
    proc = edgecv("track-eval", "--gt", tud["gt"], "--det", tud["det"], "--tracker", "sort", "--fps", 25, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["fp"], doc["fn"], doc["idsw"]) == (15, 113, 6)
    assert round(100 * doc["mota"], 1) == 62.7 and round(100 * doc["hota"], 1) == 45.3
    assert doc["tracker"] == "sort" and doc["fps"] == 25 and doc["frames_per_second"] > 0
    # the written output scores the same when read back
    assert evaluate_tracking(tud["gt"], out).to_dict() == {k: doc[k] for k in evaluate_tracking(tud["gt"], out).to_dict()}


def test_tracker_table_line(tud):
    proc = edgecv("track-eval", "--gt", tud["gt"], "--det", tud["det"])
    assert proc.returncode == 0, proc.stderr
    assert "tracker ocsort" in proc.stdout and "frames/s (321 detections in" in proc.stdout


def test_tracker_config_yaml_sets_the_options(tud, tmp_path):
    config = tmp_path / "sort.yaml"
    config.write_text("max_lost_s: 0.2\nmin_hits: 1\n")
    base = json.loads(edgecv("track-eval", "--gt", tud["gt"], "--det", tud["det"], "--tracker", "sort", "--fps", 25, "--json").stdout)
    proc = edgecv("track-eval", "--gt", tud["gt"], "--det", tud["det"], "--tracker", "sort", "--fps", 25,
                  "--tracker-config", config, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["options"] == {"max_lost_s": 0.2, "min_hits": 1}
    assert doc["tracked_boxes"] > base["tracked_boxes"]  # reported from the first hit and kept longer
    config.write_text("max_lost: 3\n")
    proc = edgecv("track-eval", "--gt", tud["gt"], "--det", tud["det"], "--tracker", "sort", "--tracker-config", config)
    assert proc.returncode == 2 and "max_lost" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    config.write_text("- 1\n")
    proc = edgecv("track-eval", "--gt", tud["gt"], "--det", tud["det"], "--tracker-config", config)
    assert proc.returncode == 2 and "expected a mapping of tracker options, got list" in proc.stderr


def test_repaired_input_warns(tud):
    bad = tud["root"] / "nan_tracks.txt"
    bad.write_text(tud["tracks"].read_text() + "9,77,nan,1,2,3,0.5,-1,-1,-1\n")
    proc = edgecv("track-eval", "--gt", tud["gt"], "--tracks", bad)
    assert proc.returncode == 0
    assert "dropped 1 of" in proc.stderr and "NaN" in proc.stderr and len(proc.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "case, message",
    [
        ("columns", r"bad\.txt:2: expected 10 values like the first row, got 4"),
        ("tracker-with-tracks", r"--tracker is for running a tracker: use it with --det, not --tracks"),
        ("unknown-tracker", r"--tracker: unknown name 'nope'; valid names: bytetrack, ocsort, sort"),
        ("missing", r"MOT tracks file not found"),
        ("repeated-id", r"id 4 appears twice in frame 1"),
    ],
)
def test_bad_input_one_line_exit_2(tud, case, message):
    bad = tud["root"] / "bad.txt"
    if case == "columns":
        bad.write_text("1,1,1,1,5,5,1,-1,-1,-1\n1,2,1,1\n")
        args = ["--tracks", bad]
    elif case == "tracker-with-tracks":
        args = ["--tracks", tud["tracks"], "--tracker", "sort"]
    elif case == "unknown-tracker":
        args = ["--det", tud["det"], "--tracker", "nope"]
    elif case == "missing":
        args = ["--tracks", tud["root"] / "missing.txt"]
    else:
        bad.write_text("1,4,1,1,5,5,1,-1,-1,-1\n1,4,9,9,5,5,1,-1,-1,-1\n")
        args = ["--tracks", bad]
    proc = edgecv("track-eval", "--gt", tud["gt"], *args)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecv: error: "), proc.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def trackeval_on_files(root, benchmark, seq, gt_text, seq_length, tracker_text):
    """TrackEval's own Evaluator on a MOTChallenge folder holding the two files as they are."""
    trackeval = pytest.importorskip("trackeval")
    split = f"{benchmark}-train"
    (root / "gt" / split / seq / "gt").mkdir(parents=True)
    (root / "gt" / split / seq / "gt" / "gt.txt").write_text(gt_text)
    (root / "gt" / split / seq / "seqinfo.ini").write_text(f"[Sequence]\nname={seq}\nseqLength={seq_length}\n")
    (root / "gt" / "seqmaps").mkdir()
    (root / "gt" / "seqmaps" / f"{split}.txt").write_text(f"name\n{seq}\n")
    (root / "trackers" / split / "t" / "data").mkdir(parents=True)
    (root / "trackers" / split / "t" / "data" / f"{seq}.txt").write_text(tracker_text)
    evaluator = trackeval.Evaluator({"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False,
                                     "TIME_PROGRESS": False, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
                                     "PLOT_CURVES": False, "LOG_ON_ERROR": None})
    dataset = trackeval.datasets.MotChallenge2DBox({"GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"),
                                                    "BENCHMARK": benchmark, "PRINT_CONFIG": False})
    res, msg = evaluator.evaluate([dataset], [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()])
    assert msg["MotChallenge2DBox"] == {"t": "Success"}
    return res["MotChallenge2DBox"]["t"]["COMBINED_SEQ"]["pedestrian"]


@pytest.fixture(scope="module")
def stadtmitte(corpus):
    """TUD-Stadtmitte as motmetrics ships it: the published ground truth (world coordinates in columns 8-10)
    and a tracker's output."""
    data = corpus / "motmetrics" / "data" / "TUD-Stadtmitte"
    if not data.is_dir():
        if os.environ.get("EDGECV_CI"):
            pytest.fail(f"motmetrics is missing from the corpus at {corpus}: benchmarks/corpus.py --install adds it")
        pytest.skip(f"motmetrics is not in the corpus at {corpus} (python benchmarks/corpus.py --install)")
    return {"gt": data / "gt.txt", "tracks": data / "test.txt"}


def test_world_coordinates_score_as_trackeval(stadtmitte, tmp_path):
    proc = edgecv("track-eval", "--gt", stadtmitte["gt"], "--tracks", stadtmitte["tracks"], "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["benchmark"], doc["gt_layout"], doc["frames"]) == ("MOT15", "world", 179)
    theirs = trackeval_on_files(tmp_path, "MOT15", "TUD-Stadtmitte", stadtmitte["gt"].read_text(), 179,
                                stadtmitte["tracks"].read_text())
    pairs = {"hota": ("HOTA", "HOTA"), "deta": ("HOTA", "DetA"), "assa": ("HOTA", "AssA"), "loca": ("HOTA", "LocA"),
             "mota": ("CLEAR", "MOTA"), "motp": ("CLEAR", "MOTP"), "idf1": ("Identity", "IDF1"),
             "fp": ("CLEAR", "CLR_FP"), "fn": ("CLEAR", "CLR_FN"), "idsw": ("CLEAR", "IDSW"), "mt": ("CLEAR", "MT")}
    for key, (metric, field) in pairs.items():
        assert doc[key] == pytest.approx(float(np.mean(theirs[metric][field])), abs=1e-9, rel=0), key
    assert (doc["fp"], doc["fn"], doc["idsw"]) == (45, 452, 7)  # motmetrics' own test expects these too

    proc = edgecv("track-eval", "--gt", stadtmitte["gt"], "--tracks", stadtmitte["tracks"])
    assert proc.returncode == 0 and proc.stderr == ""
    assert "TUD-Stadtmitte: 179 frames, 10 ground-truth tracks (1156 boxes)" in proc.stdout
    assert "MOT15 rules (gt columns 8-10: world coordinates x,y,z (MOT15, 3D), not used)" in proc.stdout
    forced = edgecv("track-eval", "--gt", stadtmitte["gt"], "--tracks", stadtmitte["tracks"], "--benchmark", "MOT15", "--json")
    assert json.loads(forced.stdout) == doc


def test_world_coordinates_refused_under_mot17_rules(stadtmitte):
    proc = edgecv("track-eval", "--gt", stadtmitte["gt"], "--tracks", stadtmitte["tracks"], "--benchmark", "MOT17")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "MOT17 ground truth needs classes 1..13 in column 8, got world coordinates" in lines[0]
    assert "MOT15 rules (benchmark MOT15) ignore that column" in lines[0]


def test_sort_on_stadtmitte_detections(stadtmitte, shared_data):
    """A tracker run on the published detections, scored against the world-coordinate ground truth."""
    proc = edgecv("track-eval", "--gt", stadtmitte["gt"], "--det", shared_data / "mot15" / "TUD-Stadtmitte" / "det.txt",
                  "--tracker", "sort", "--fps", 25, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["gt_layout"] == "world" and doc["gt_dets"] == 1156
    assert 0.6 < doc["mota"] < 0.8 and 0.45 < doc["hota"] < 0.6  # measured: MOTA 71.7, HOTA 53.0
