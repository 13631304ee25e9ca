"""evaluate_tracking equals TrackEval's official pipeline (Evaluator + MotChallenge2DBox on a MOTChallenge
folder layout) to 1e-9, on MOT15 and on MOT17/MOT20 ground truth with distractors; and its errors.

(Named test_track_evaluate.py: tests/edgecv/detection/test_evaluate.py has the plain name, and pytest's default
import mode needs unique basenames.)
"""

import logging
import os
import sys

import numpy as np
import pytest

from edgecv.errors import ConfigError, InputError, MissingDependencyError
from edgecv.tracking.evaluate import TrackingMetrics, evaluate_tracking
from edgecv.tracking.mot import MotSequence, format_rows, read_mot

trackeval = pytest.importorskip("trackeval")

# our field -> (TrackEval metric, field, how TrackEval's summary reports it)
FLOATS = {
    "hota": ("HOTA", "HOTA"), "deta": ("HOTA", "DetA"), "assa": ("HOTA", "AssA"), "detre": ("HOTA", "DetRe"),
    "detpr": ("HOTA", "DetPr"), "assre": ("HOTA", "AssRe"), "asspr": ("HOTA", "AssPr"), "loca": ("HOTA", "LocA"),
    "mota": ("CLEAR", "MOTA"), "motp": ("CLEAR", "MOTP"), "recall": ("CLEAR", "CLR_Re"),
    "precision": ("CLEAR", "CLR_Pr"), "idf1": ("Identity", "IDF1"), "idp": ("Identity", "IDP"), "idr": ("Identity", "IDR"),
}
INTS = {
    "tp": ("CLEAR", "CLR_TP"), "fp": ("CLEAR", "CLR_FP"), "fn": ("CLEAR", "CLR_FN"), "idsw": ("CLEAR", "IDSW"),
    "frag": ("CLEAR", "Frag"), "mt": ("CLEAR", "MT"), "pt": ("CLEAR", "PT"), "ml": ("CLEAR", "ML"),
    "gt_ids": ("Count", "GT_IDs"), "gt_dets": ("Count", "GT_Dets"), "tracker_ids": ("Count", "IDs"),
    "tracker_dets": ("Count", "Dets"),
}


def official(root, benchmark, seq, gt_text, seq_length, trackers):
    """TrackEval run the documented way: GT_FOLDER/<BENCH>-train/<seq>/{gt/gt.txt,seqinfo.ini}, a seqmap, and
    TRACKERS_FOLDER/<BENCH>-train/<tracker>/data/<seq>.txt; Evaluator with default metric settings."""
    split = f"{benchmark}-train"
    seq_dir = root / "gt" / split / seq
    (seq_dir / "gt").mkdir(parents=True)
    (seq_dir / "gt" / "gt.txt").write_text(gt_text)
    (seq_dir / "seqinfo.ini").write_text(
        f"[Sequence]\nname={seq}\nimDir=img1\nframeRate=25\nseqLength={seq_length}\nimWidth=640\nimHeight=480\nimExt=.jpg\n"
    )
    (root / "gt" / "seqmaps").mkdir()
    (root / "gt" / "seqmaps" / f"{split}.txt").write_text(f"name\n{seq}\n")
    paths = {}
    for name, text in trackers.items():
        data = root / "trackers" / split / name / "data"
        data.mkdir(parents=True)
        paths[name] = data / f"{seq}.txt"
        paths[name].write_text(text)
    evaluator = trackeval.Evaluator(
        {"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
         "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "LOG_ON_ERROR": None}
    )
    dataset = trackeval.datasets.MotChallenge2DBox(
        {"GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"), "BENCHMARK": benchmark,
         "SPLIT_TO_EVAL": "train", "PRINT_CONFIG": False}
    )
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()]
    res, msg = evaluator.evaluate([dataset], metrics)
    assert msg["MotChallenge2DBox"] == {name: "Success" for name in trackers}
    out = {name: res["MotChallenge2DBox"][name]["COMBINED_SEQ"]["pedestrian"] for name in trackers}
    return seq_dir / "gt" / "gt.txt", paths, out


def assert_equal_to_trackeval(ours: TrackingMetrics, theirs: dict):
    for key, (metric, field) in FLOATS.items():
        assert getattr(ours, key) == pytest.approx(float(np.mean(theirs[metric][field])), abs=1e-9, rel=0), key
    for key, (metric, field) in INTS.items():
        assert getattr(ours, key) == int(theirs[metric][field]), key


def rows_text(rows):
    return format_rows(np.asarray(rows, float))


def jittered_copy(gt_rows, rng, *, drop=0.1, switch_after=None, extra=0):
    """Tracker output made from ground truth: moved and resized boxes, missed boxes, one identity switch, false boxes."""
    rows = np.full((len(gt_rows), 10), -1.0)
    rows[:, : gt_rows.shape[1]] = gt_rows
    rows = rows[rng.random(len(rows)) >= drop]
    rows[:, 2:4] += rng.normal(0, 4, size=(len(rows), 2))
    rows[:, 4:6] *= rng.uniform(0.85, 1.15, size=(len(rows), 2))
    rows[:, 2:6] = rows[:, 2:6].round(3)
    rows[:, 6] = rng.uniform(0.3, 1, len(rows)).round(6)
    rows[:, 7:] = -1
    if switch_after is not None:
        a, b = (rows[:, 0] > switch_after) & (rows[:, 1] == 1), (rows[:, 0] > switch_after) & (rows[:, 1] == 2)
        rows[a, 1], rows[b, 1] = 2, 1
    frames = int(gt_rows[:, 0].max())
    fake = np.column_stack([
        rng.integers(1, frames + 1, extra), np.arange(extra) + 1000, rng.uniform(0, 500, (extra, 2)).round(3),
        rng.uniform(20, 80, (extra, 2)).round(3), np.full(extra, 0.4), -np.ones((extra, 3)),
    ])
    rows = np.concatenate([rows, fake])
    return rows[np.argsort(rows[:, 0], kind="stable")]


def test_mot15_tud_campus_equals_trackeval(shared_data, tmp_path, capsys):
    mot15 = shared_data / "mot15" / "TUD-Campus"
    gt_text = (mot15 / "gt.txt").read_text()
    det = read_mot(mot15 / "det.txt")
    unique = det.rows.copy()
    unique[:, 1] = np.arange(len(unique)) + 1  # every detection its own track
    gt_rows = read_mot(mot15 / "gt.txt", kind="gt").rows
    trackers = {
        "unique": rows_text(unique),
        "jittered": rows_text(jittered_copy(gt_rows, np.random.default_rng(1), switch_after=30, extra=12)),
        "empty": "",
    }
    gt_file, paths, theirs = official(tmp_path, "MOT15", "TUD-Campus", gt_text, 71, trackers)
    capsys.readouterr()
    for name, path in paths.items():
        ours = evaluate_tracking(gt_file, path)
        assert ours.benchmark == "MOT15" and ours.frames == 71
        assert_equal_to_trackeval(ours, theirs[name])
    assert capsys.readouterr().out == ""  # TrackEval's printing is kept out of our stdout
    ours = evaluate_tracking(gt_file, paths["jittered"])
    assert 0.5 < ours.hota < 0.95 and ours.idsw >= 1 and ours.fp >= 12  # a real, imperfect result


def _synthetic_mot17(rng, frames=40):
    """Pedestrians (class 1) plus a static person (7), a car (3), a non-MOT vehicle (6), a reflection (12) and a
    pedestrian marked not to count (conf 0); visibility in column 9."""
    objects = [(1, 1, 1), (2, 1, 1), (3, 1, 1), (4, 1, 1), (5, 7, 1), (6, 3, 1), (7, 6, 1), (8, 1, 0), (9, 12, 1)]
    rows = []
    for tid, cls, conf in objects:
        x, y = rng.uniform(0, 500), rng.uniform(0, 300)
        vx, vy = rng.normal(0, 3, 2)
        w, h = rng.uniform(30, 60), rng.uniform(80, 150)
        first, last = sorted(rng.integers(1, frames + 1, 2))
        for f in range(first, last + 1):
            rows.append([f, tid, round(x + vx * f, 2), round(y + vy * f, 2), round(w, 2), round(h, 2), conf, cls,
                         round(rng.uniform(0, 1), 3)])
    rows = np.array(rows)
    return rows[np.argsort(rows[:, 0], kind="stable")]


@pytest.mark.parametrize("benchmark", ["MOT17", "MOT20"])
def test_mot17_distractors_equal_trackeval(tmp_path, benchmark):
    rng = np.random.default_rng(7)
    gt_rows = _synthetic_mot17(rng)
    gt_text = format_rows(gt_rows)  # 9 columns, as MOT16/17/20 gt.txt
    assert gt_text.splitlines()[0].count(",") == 8
    trackers = {
        "jittered": rows_text(jittered_copy(gt_rows, rng, drop=0.15, switch_after=20, extra=8)),
        "all": rows_text(jittered_copy(gt_rows, rng, drop=0.0)),
    }
    gt_file, paths, theirs = official(tmp_path, benchmark, "SYN-01", gt_text, 45, trackers)  # 5 empty frames at the end
    for name, path in paths.items():
        ours = evaluate_tracking(gt_file, path, benchmark=None if benchmark == "MOT17" else benchmark)
        assert ours.benchmark == benchmark and ours.frames == 45
        assert_equal_to_trackeval(ours, theirs[name])
    ours = evaluate_tracking(gt_file, paths["all"], benchmark=benchmark)
    # only the counted pedestrians are ground truth; boxes on the car stay false positives
    counted = gt_rows[(gt_rows[:, 7] == 1) & (gt_rows[:, 6] != 0)]
    assert ours.gt_dets == len(counted) and ours.gt_ids == len(np.unique(counted[:, 1]))


def motmetrics_data(corpus):
    data = corpus / "motmetrics" / "data"
    if not data.is_dir():
        if os.environ.get("EDGECV_CI"):
            pytest.fail(f"motmetrics is missing from the corpus at {corpus}: benchmarks/corpus.py --install adds it")
        pytest.skip(f"motmetrics is not in the corpus at {corpus} (python benchmarks/corpus.py --install)")
    return data


def test_mot15_world_coordinates_equal_trackeval(corpus, tmp_path):
    """TUD-Stadtmitte's published ground truth has world coordinates in columns 8-10: read as MOT15 (TrackEval's
    MOT15 rules ignore those columns), scored exactly as TrackEval scores the same file; the tracker output is
    the one motmetrics ships beside it, and a jittered copy of the truth."""
    data = motmetrics_data(corpus) / "TUD-Stadtmitte"
    gt_text = (data / "gt.txt").read_text()
    gt_rows = read_mot(data / "gt.txt", kind="gt").rows
    trackers = {
        "motmetrics": (data / "test.txt").read_text(),
        "jittered": rows_text(jittered_copy(gt_rows, np.random.default_rng(4), switch_after=90, extra=20)),
    }
    gt_file, paths, theirs = official(tmp_path, "MOT15", "TUD-Stadtmitte", gt_text, 179, trackers)
    assert gt_file.read_text() == gt_text  # TrackEval read the published file itself
    for name, path in paths.items():
        for benchmark in (None, "MOT15"):
            ours = evaluate_tracking(gt_file, path, benchmark=benchmark)
            assert (ours.benchmark, ours.gt_layout, ours.frames) == ("MOT15", "world", 179)
            assert_equal_to_trackeval(ours, theirs[name])
    # motmetrics' own test expects these CLEAR/ID numbers for its test.txt (tests/test_metrics.py, TUD-Stadtmitte)
    m = evaluate_tracking(gt_file, paths["motmetrics"])
    assert (m.fp, m.fn, m.idsw, m.mt, m.ml, m.gt_ids) == (45, 452, 7, 5, 1, 10)
    assert (m.mota, m.idf1, m.idp, m.idr, m.recall, m.precision) == pytest.approx(
        (0.564014, 0.644619, 0.819760, 0.531142, 0.608997, 0.939920), abs=1e-6
    )


def test_trackeval_refuses_world_coordinates_under_mot17_rules(corpus, tmp_path):
    """Why MOT17 rules are refused for such a file: TrackEval itself stops on the 'classes' it finds there."""
    data = motmetrics_data(corpus) / "TUD-Stadtmitte"
    with pytest.raises(trackeval.utils.TrackEvalException, match="invalid gt classes"):
        official(tmp_path, "MOT17", "TUD-Stadtmitte", (data / "gt.txt").read_text(), 179,
                 {"motmetrics": (data / "test.txt").read_text()})


MOT17_GT = "1,1,10,10,20,40,1,1,0.9\n1,2,50,10,20,40,1,3,1\n2,1,12,10,20,40,1,1,0.8\n"
WORLD_GT = "1,1,10,10,20,40,1,4.4852,5.5016,0\n2,1,12,10,20,40,1,4.41,5.52,0\n"
MOT15_GT = "1,1,10,10,20,40,1,-1,-1,-1\n2,1,12,10,20,40,1,-1,-1,-1\n"
ODD_GT = "1,1,10,10,20,40,1,0,1,-1\n2,1,12,10,20,40,1,1,1,-1\n"
CLASSES_10 = "1,1,10,10,20,40,1,1,0.9,4\n1,2,50,10,20,40,1,3,1,4\n2,1,12,10,20,40,1,1,0.8,4\n"  # column 10 not -1
# ground truth, --benchmark, (rules, layout, ground-truth boxes scored) or the error
BENCHMARK_CASES = [
    ("mot15", MOT15_GT, None, ("MOT15", "2d", 2)),
    ("mot15 forced", MOT15_GT, "MOT15", ("MOT15", "2d", 2)),
    ("mot15 as MOT17", MOT15_GT, "MOT17", r"MOT17 ground truth needs classes 1..13 in column 8, got -1 everywhere"),
    ("world", WORLD_GT, None, ("MOT15", "world", 2)),
    ("world forced MOT15", WORLD_GT, "mot15", ("MOT15", "world", 2)),
    ("world as MOT17", WORLD_GT, "MOT17", r"MOT17 ground truth needs classes 1..13 in column 8, got world coordinates "
                                          r"in columns 8-10 \(column 8 \[4.41, 4.4852\], column 10 \[0\]\); MOT15 rules"),
    ("world as MOT20", WORLD_GT, "MOT20", r"MOT20 ground truth needs classes"),
    ("mot17", MOT17_GT, None, ("MOT17", "classes", 2)),  # the car (class 3) is not scored
    ("mot17 forced MOT16", MOT17_GT, "MOT16", ("MOT16", "classes", 2)),
    ("mot17 forced MOT15", MOT17_GT, "MOT15", ("MOT15", "classes", 3)),  # MOT15 rules: every row counts
    ("classes, visibility -1", MOT17_GT.replace(",0.9\n", ",-1\n"), None, ("MOT17", "classes", 2)),
    ("classes and 3 values after: world", CLASSES_10, None, ("MOT15", "world", 3)),
    ("classes and 3 values after, forced MOT17", CLASSES_10, "MOT17", ("MOT17", "classes", 2)),
    ("no layout", ODD_GT, None, r"columns 8-10 fit no MOTChallenge ground-truth layout: \[0, 1\] in column 8"),
    ("no layout forced MOT15", ODD_GT, "MOT15", ("MOT15", "ignored", 2)),
    ("unknown benchmark", MOT15_GT, "KITTI", r"benchmark: expected one of MOT15, MOT16, MOT17, MOT20, got 'KITTI'"),
]


@pytest.mark.parametrize("gt_text, benchmark, expected", [c[1:] for c in BENCHMARK_CASES], ids=[c[0] for c in BENCHMARK_CASES])
def test_benchmark_from_the_file_or_forced(tmp_path, caplog, gt_text, benchmark, expected):
    path = tmp_path / "gt.txt"
    path.write_text(gt_text)
    tracks = seq([[1, 5, 10, 10, 20, 40, 1, -1, -1, -1], [2, 5, 12, 10, 20, 40, 1, -1, -1, -1]])
    if isinstance(expected, str):
        with pytest.raises((InputError, ConfigError), match=expected) as info:
            evaluate_tracking(path, tracks, benchmark=benchmark)
        assert "\n" not in str(info.value)
        return
    with caplog.at_level(logging.WARNING, logger="edgecv.tracking.evaluate"):
        m = evaluate_tracking(path, tracks, benchmark=benchmark)
    assert (m.benchmark, m.gt_layout, m.gt_dets) == expected
    assert m.tp == 2 and m.fn == expected[2] - 2
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert bool(warned) == (expected[:2] == ("MOT15", "classes"))
    assert all("MOT15 rules score every considered row" in w for w in warned)


def test_in_memory_equals_files(shared_data, tmp_path):
    mot15 = shared_data / "mot15" / "TUD-Campus"
    gt = read_mot(mot15 / "gt.txt", kind="gt")
    path = tmp_path / "tracks.txt"
    path.write_text(rows_text(jittered_copy(gt.rows, np.random.default_rng(3), switch_after=10, extra=5)))
    from_file = evaluate_tracking(mot15 / "gt.txt", path)
    rebuilt = MotSequence.from_frames(read_mot(path, kind="tracks").frames)  # through Detections (float32) and back
    assert evaluate_tracking(gt, rebuilt) == from_file
    assert from_file.to_dict()["mota"] == from_file.mota


def test_metric_subset(shared_data):
    gt = shared_data / "mot15" / "TUD-Campus" / "gt.txt"
    m = evaluate_tracking(gt, MotSequence(read_mot(gt, kind="gt").rows, kind="tracks"), metrics=["CLEAR"])
    assert m.mota == 1.0 and m.idsw == 0 and m.hota is None and m.idf1 is None
    with pytest.raises(ConfigError, match="metrics: expected some of HOTA, CLEAR, Identity, got MOTA"):
        evaluate_tracking(gt, gt, metrics=["MOTA"])


GT = "1,1,10,10,20,40,1,-1,-1,-1\n2,1,12,10,20,40,1,-1,-1,-1\n"


def seq(rows, kind="tracks", **kw):
    return MotSequence(np.array(rows, float).reshape(-1, 10), kind=kind, **kw)


def test_5000_boxes_in_one_frame():
    rng = np.random.default_rng(0)
    boxes = np.column_stack([np.ones(5000), np.arange(1, 5001), rng.uniform(0, 1000, (5000, 2)).round(2),
                             np.full((5000, 2), 30.0), np.full(5000, 0.5), -np.ones((5000, 3))])
    gt = seq([[1, 1, 10, 10, 20, 40, 1, -1, -1, -1], [2, 1, 12, 10, 20, 40, 1, -1, -1, -1]], kind="gt")
    m = evaluate_tracking(gt, seq(boxes), metrics=("HOTA", "CLEAR"))
    assert m.tracker_dets == 5000 and m.fn >= 1 and m.fp >= 4999


def test_huge_track_ids_score_the_same(shared_data):
    """TrackEval indexes an array by id; ids are passed to it by rank, which changes no number."""
    gt = read_mot(shared_data / "mot15" / "TUD-Campus" / "gt.txt", kind="gt")
    rows = jittered_copy(gt.rows, np.random.default_rng(2), switch_after=20, extra=4)
    big = rows.copy()
    big[:, 1] = big[:, 1] * 7 + 10**12
    assert evaluate_tracking(gt, MotSequence(big)) == evaluate_tracking(gt, MotSequence(rows))


def test_errors(tmp_path):
    gt = seq([[1, 1, 10, 10, 20, 40, 1, -1, -1, -1], [2, 1, 12, 10, 20, 40, 1, -1, -1, -1]], kind="gt", seq_length=2)
    good = seq([[1, 5, 10, 10, 20, 40, 1, -1, -1, -1]])
    with pytest.raises(InputError, match="has no boxes to evaluate"):
        evaluate_tracking(seq([], kind="gt"), good)
    with pytest.raises(InputError, match="frame 3 is past the sequence's last frame 2"):
        evaluate_tracking(gt, seq([[3, 5, 10, 10, 20, 40, 1, -1, -1, -1]]))
    with pytest.raises(InputError, match="class 2 in column 8: MOTChallenge scores pedestrians only"):
        evaluate_tracking(gt, seq([[1, 5, 10, 10, 20, 40, 1, 2, -1, -1]]))
    with pytest.raises(InputError, match="tracker output: expected a tracks sequence, got a gt sequence"):
        evaluate_tracking(gt, gt)
    with pytest.raises(InputError, match=r"fit no MOTChallenge ground-truth layout: \[0, 1\] in column 8"):
        evaluate_tracking(seq([[1, 1, 10, 10, 20, 40, 1, 0, 1, -1], [1, 2, 10, 10, 20, 40, 1, 1, 1, -1]], kind="gt"), good)
    with pytest.raises(InputError, match=r"MOT17 ground truth needs classes 1..13 in column 8, got -1 everywhere"):
        evaluate_tracking(gt, good, benchmark="MOT17")
    with pytest.raises(ConfigError, match="benchmark: expected one of MOT15"):
        evaluate_tracking(gt, good, benchmark="KITTI")
    with pytest.raises(InputError, match="MOT tracks file not found"):
        evaluate_tracking(gt, tmp_path / "missing.txt")
    # every box its own track, over a long sequence: TrackEval's IDF1 would need tens of GB
    n = 30000
    many = np.column_stack([np.arange(n) // 10 + 1, np.arange(n), np.zeros((n, 2)), np.full((n, 2), 10.0),
                            np.ones(n), -np.ones((n, 3))])
    with pytest.raises(InputError, match=r"30000 track ids .* is every box its own track\?"):
        evaluate_tracking(seq(many[:, :10], kind="gt"), seq(many))


def test_missing_trackeval_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "trackeval", None)
    gt = seq([[1, 1, 10, 10, 20, 40, 1, -1, -1, -1]], kind="gt")
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgecv\[track\]'"):
        evaluate_tracking(gt, seq([[1, 5, 10, 10, 20, 40, 1, -1, -1, -1]]))
