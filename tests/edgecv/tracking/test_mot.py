"""MOTChallenge text I/O: exact round trips, seqinfo.ini, and every kind of bad input refused or repaired loudly."""

import logging
import os
import re

import numpy as np
import pytest

from edgecv.detection.detections import Detections
from edgecv.errors import InputError, OutputError
from edgecv.tracking.mot import MotSequence, format_rows, mot_rows, read_mot, write_mot

LOGGER = "edgecv.tracking.mot"


def write(tmp_path, text, name="f.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_det_file(tmp_path):
    path = write(tmp_path, "1,-1,281.931,187.466,79.93,209.537,0.997784,-1,-1,-1\n3,-1,10,20,5,6,0.5,-1,-1,-1\n")
    det = read_mot(path)
    assert det.kind == "det" and det.num_frames == 3 and det.num_boxes == 2
    assert sorted(det.frames) == [1, 2, 3] and len(det.frames[2]) == 0  # every frame, the empty one too
    d = det.frames[1]
    assert d.tracker_id is None and d.class_id.tolist() == [-1]
    np.testing.assert_allclose(d.xyxy, [[281.931, 187.466, 281.931 + 79.93, 187.466 + 209.537]], rtol=1e-6)
    assert d.confidence.tolist() == [np.float32(0.997784)]
    assert det.rows[0].tolist() == [1, -1, 281.931, 187.466, 79.93, 209.537, 0.997784, -1, -1, -1]
    assert det.ids.tolist() == []


def test_reads_gt_with_ids_and_classes(tmp_path):
    path = write(tmp_path, "1,4,10,20,30,40,1,1,0.8\n1,2,50,20,30,40,0,7,0.1\n2,4,12,20,30,40,1,1,1\n")  # MOT17: 9 columns
    gt = read_mot(path, kind="gt")
    assert gt.frames[1].tracker_id.tolist() == [4, 2]
    assert gt.frames[1].class_id.tolist() == [1, 7]
    assert gt.frames[1].confidence.tolist() == [1.0, 0.0]  # the consider flag
    assert gt.rows[:, 9].tolist() == [-1, -1, -1]  # padded to 10 columns
    assert gt.ids.tolist() == [2, 4]


def test_round_trip_is_exact(tmp_path):
    text = "1,1,281.931,187.466,79.93,209.537,0.997784,-1,-1,-1\n1,2,0.1,0.2,0.30000000000000004,1e-3,1,-1,-1,-1\n"
    seq = read_mot(write(tmp_path, text), kind="tracks")
    again = read_mot(write_mot(tmp_path / "out" / "t.txt", seq), kind="tracks")
    assert again.rows.tobytes() == seq.rows.tobytes()
    assert (tmp_path / "out" / "t.txt").read_text().splitlines()[0] == "1,1,281.931,187.466,79.93,209.537,0.997784,-1,-1,-1"


def test_write_from_detections(tmp_path):
    frames = {
        1: Detections(np.array([[10.5, 20, 40.25, 60]]), [0.91234567], [0], tracker_id=[3]),
        2: Detections.empty(),
        4: Detections(np.array([[11, 20, 41, 60], [100, 100, 120, 150]]), [0.9, 0.8], [0, 0], tracker_id=[3, 8]),
    }
    path = write_mot(tmp_path / "tracks.txt", frames)
    assert path.read_text().splitlines() == [
        "1,3,10.5,20,29.75,40,0.912346,-1,-1,-1",
        "4,3,11,20,30,40,0.9,-1,-1,-1",
        "4,8,100,100,20,50,0.8,-1,-1,-1",
    ]
    seq = read_mot(path, kind="tracks")
    assert seq.rows.tobytes() == MotSequence.from_frames(frames).rows.tobytes()
    assert seq.frames[4].tracker_id.tolist() == [3, 8]
    np.testing.assert_array_equal(seq.frames[4].xyxy, frames[4].xyxy)


TRACKED = Detections(np.array([[2, 3, 12, 8], [0.5, 1, 4, 9]]), [1.0, 0.75], [0, 1], tracker_id=[7, 9])


@pytest.mark.parametrize(
    "frame, detections, kind, expected, error",
    [
        (5, TRACKED, "tracks", ["5,7,2,3,10,5,1,-1,-1,-1", "5,9,0.5,1,3.5,8,0.75,-1,-1,-1"], None),
        (1, TRACKED, "gt", ["1,7,2,3,10,5,1,0,-1,-1", "1,9,0.5,1,3.5,8,0.75,1,-1,-1"], None),
        (1, TRACKED, "det", ["1,-1,2,3,10,5,1,-1,-1,-1", "1,-1,0.5,1,3.5,8,0.75,-1,-1,-1"], None),
        (2, Detections(np.array([[1234.5678, 0.0001, 1300.1234, 5.0]], np.float32), [0.0123456789], [0], tracker_id=[1]),
         "tracks", ["2,1,1234.568,0,65.556,5,0.012346,-1,-1,-1"], None),
        (3, Detections.empty(), "tracks", [], None),
        (1, Detections(np.array([[0, 0, 1, 1]]), [1.0], [0]), "tracks", None, "frame 1: expected Detections with tracker_id"),
        (1, np.zeros((1, 5)), "tracks", None, "frame 1: expected Detections, got ndarray"),
    ],
)
def test_mot_rows_table(frame, detections, kind, expected, error):
    if error:
        with pytest.raises(InputError, match=error):
            mot_rows(frame, detections, kind=kind)
        return
    assert format_rows(mot_rows(frame, detections, kind=kind)).splitlines() == expected


def test_written_rows_read_back_exactly(tmp_path):
    frames = {1: TRACKED, 2: Detections(np.array([[1234.5678, 20.25, 1300.1234, 90.5]], np.float32), [0.0123456789],
                                        [0], tracker_id=[3])}
    path = write_mot(tmp_path / "t.txt", frames)
    back = read_mot(path, kind="tracks", seqinfo=False)
    assert back.rows.tobytes() == np.concatenate([mot_rows(f, d) for f, d in frames.items()]).tobytes()


def test_write_needs_track_ids(tmp_path):
    with pytest.raises(InputError, match="tracker_id"):
        write_mot(tmp_path / "t.txt", {1: Detections(np.array([[0, 0, 1, 1]]), [0.5], [0])})


def test_write_to_unwritable_place(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        write_mot(tmp_path / "file" / "t.txt", {})


def test_seqinfo_one_folder_up(tmp_path):
    seq = tmp_path / "MOT17-02"
    (seq / "gt").mkdir(parents=True)
    (seq / "seqinfo.ini").write_text(
        "[Sequence]\nname=MOT17-02\nimDir=img1\nframeRate=30\nseqLength=600\nimWidth=1920\nimHeight=1080\nimExt=.jpg\n"
    )
    gt = read_mot(write(seq / "gt", "1,1,10,20,30,40,1,1,1\n", "gt.txt"), kind="gt")
    assert (gt.name, gt.fps, gt.seq_length, gt.num_frames, gt.image_size) == ("MOT17-02", 30.0, 600, 600, (1920, 1080))
    assert len(gt.frames) == 600
    assert read_mot(seq / "gt" / "gt.txt", kind="gt", seqinfo=False).num_frames == 1


def test_frames_past_seq_length_are_refused(tmp_path):
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nseqLength=5\n")
    with pytest.raises(InputError, match="frame 9 is past the sequence's last frame 5"):
        read_mot(write(tmp_path, "9,1,10,20,30,40,1,-1,-1,-1\n"), kind="tracks")


def test_bad_seqinfo(tmp_path):
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nframeRate=fast\n")
    with pytest.raises(InputError, match="seqinfo.ini: expected a number for frameRate"):
        read_mot(write(tmp_path, "1,-1,10,20,30,40,1\n"))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="MOT gt file not found"):
        read_mot(tmp_path / "nope.txt", kind="gt")


ROW = "1,-1,10,20,30,40,0.9,-1,-1,-1"

# name, kind, file text, ("error", message regex) or ("warn", message regex or None, rows kept, frames in order)
BAD_INPUT = [
    ("nan box", "det", f"{ROW}\n2,-1,nan,20,30,40,0.9,-1,-1,-1\n", ("warn", r"dropped 1 of 2 rows: 1 with NaN", 1, [1])),
    ("inf box", "det", f"{ROW}\n2,-1,10,inf,30,40,0.9,-1,-1,-1\n", ("warn", r"1 with NaN or infinite", 1, [1])),
    ("nan score", "det", f"{ROW}\n2,-1,10,20,30,40,NaN,-1,-1,-1\n", ("warn", r"1 with NaN or infinite", 1, [1])),
    ("zero width", "det", f"{ROW}\n2,-1,10,20,0,40,0.9,-1,-1,-1\n", ("warn", r"1 with width or height <= 0 \(first at .*:2\)", 1, [1])),
    ("negative height", "gt", "1,1,10,20,30,-4,1,-1,-1,-1\n1,2,10,20,30,40,1,-1,-1,-1\n", ("warn", r"width or height <= 0", 1, [1])),
    ("all rows bad", "det", "1,-1,10,20,0,40,0.9,-1,-1,-1\n", ("warn", r"dropped 1 of 1", 0, [])),
    ("empty file", "det", "", ("warn", r"has no rows", 0, [])),
    ("blank lines only", "tracks", "\n  \n", ("warn", r"has no rows", 0, [])),
    ("empty frames between", "det", f"{ROW}\n7,-1,10,20,30,40,0.9,-1,-1,-1\n", ("warn", None, 2, [1, 7])),
    ("out of order", "det", f"3{ROW[1:]}\n{ROW}\n2{ROW[1:]}\n", ("warn", r"out of order .*:2, frame 1 after 3\); sorted", 3, [1, 2, 3])),
    ("frame repeated apart", "det", f"{ROW}\n2{ROW[1:]}\n1,-1,50,20,30,40,0.8,-1,-1,-1\n", ("warn", r"out of order", 3, [1, 1, 2])),
    ("identical rows", "det", f"{ROW}\n{ROW}\n{ROW}\n", ("warn", r"2 repeated identical rows were kept once \(first repeat at .*:2\)", 1, [1])),
    ("gt grouped by id", "gt", "1,1,1,1,5,5,1,-1,-1,-1\n2,1,1,1,5,5,1,-1,-1,-1\n1,2,9,9,5,5,1,-1,-1,-1\n", ("warn", None, 3, [1, 1, 2])),
    ("blank lines, spaces, trailing comma", "det", f"\n 1, -1, 10, 20, 30, 40, 0.9,\n\n2{ROW[1:-9]}\n", ("warn", None, 2, [1, 2])),
    ("whitespace separated", "det", "1 -1 10 20 30 40 0.9 -1 -1 -1\n2 -1 10 20 30 40 0.9 -1 -1 -1\n", ("warn", None, 2, [1, 2])),
    ("5 columns", "det", "1,-1,10,20,30\n", ("error", r"f\.txt:1: expected 7 to 10 comma-separated values \(frame,id,x,y,w,h,conf.*\), got 5")),
    ("11 columns", "det", f"{ROW},7\n", ("error", r"f\.txt:1: expected 7 to 10 .*got 11")),
    ("columns change", "det", f"{ROW}\n{ROW}\n{ROW[:-3]}\n", ("error", r"f\.txt:3: expected 10 values like the first row, got 9")),
    ("not a number", "det", f"{ROW}\n1,-1,10,abc,30,40,0.9,-1,-1,-1\n", ("error", r"f\.txt:2: expected numbers, got 'abc'")),
    ("frame 0", "det", f"0{ROW[1:]}\n", ("error", r"f\.txt:1: expected a 1-based whole frame number up to 1000000, got 0")),
    ("frame 1e9", "det", f"{ROW}\n1e9{ROW[1:]}\n", ("error", r"f\.txt:2: expected a 1-based whole frame number up to 1000000, got 1e\+09")),
    ("fractional frame", "det", f"1.5{ROW[1:]}\n", ("error", r"whole frame number up to 1000000, got 1.5")),
    ("gt id repeated in a frame", "gt", "1,1,1,1,5,5,1,-1,-1,-1\n1,1,9,9,5,5,1,-1,-1,-1\n", ("error", r"id 1 appears twice in frame 1 \(.*:1, .*:2\); an id is one box per frame")),
    ("track id repeated in a frame", "tracks", "2,5,1,1,5,5,1,-1,-1,-1\n2,5,9,9,5,5,1,-1,-1,-1\n", ("error", r"id 5 appears twice in frame 2")),
    ("det file given as tracks", "tracks", f"{ROW}\n", ("error", r"f\.txt:1: expected a whole track id >= 0 in a tracker output, got -1 \(is this a det file\?\)")),
    ("fractional gt id", "gt", "1,1.5,1,1,5,5,1,-1,-1,-1\n", ("error", r"whole track id >= 0 in ground truth, got 1.5")),
    # numbers: a damaged value is refused with file:line and the field; NaN, inf and sizes <= 0 are dropped (above)
    ("w = 1e38", "det", f"{ROW}\n2,-1,10,20,1e38,40,0.9,-1,-1,-1\n",
     ("error", r"f\.txt:2: expected x\+w within \+-1e\+06 pixels \(edgecv\.detection\.boxes\.MAX_COORD\), got x\+w=10\+1e\+38")),
    ("x = -1e200", "gt", "1,1,-1e200,20,30,40,1,-1,-1,-1\n", ("error", r"f\.txt:1: expected x within \+-1e\+06 pixels .*got x=-1e\+200")),
    ("x+w past 1e6", "tracks", "1,1,999990,20,30,40,1,-1,-1,-1\n",
     ("error", r"f\.txt:1: expected x\+w within \+-1e\+06 pixels .*got x\+w=999990\+30")),
    ("y+h at 1e6 exactly", "det", "1,-1,10,999960,30,40,0.9,-1,-1,-1\n", ("warn", None, 1, [1])),
    ("partly outside the image", "gt", "1,1,-30,-5,30,40,1,-1,-1,-1\n", ("warn", None, 1, [1])),
    ("score 1e39", "det", f"{ROW}\n2,-1,10,20,30,40,1e39,-1,-1,-1\n",
     ("error", r"f\.txt:2: expected a score \(conf, column 7\) within float32's \+-3\.4e\+38, got 1e\+39")),
    ("negative score, kept", "det", "1,-1,10,20,30,40,-2.5,-1,-1,-1\n", ("warn", None, 1, [1])),
    ("score 97, kept", "det", "1,-1,10,20,30,40,97,-1,-1,-1\n", ("warn", None, 1, [1])),
    ("gt id 1e20", "gt", "1,1e20,1,1,5,5,1,-1,-1,-1\n", ("error", r"f\.txt:1: expected a whole track id >= 0 \(at most 2\*\*53\) in ground truth, got 1e\+20")),
    ("track id 2**53", "tracks", "1,9007199254740992,1,1,5,5,1,-1,-1,-1\n", ("warn", None, 1, [1])),
    ("negative frame", "det", "-3,-1,10,20,30,40,0.9,-1,-1,-1\n", ("error", r"f\.txt:1: expected a 1-based whole frame number up to 1000000, got -3")),
    ("NaN frame", "det", f"{ROW}\nnan,-1,10,20,30,40,0.9,-1,-1,-1\n", ("warn", r"dropped 1 of 2 rows: 1 with NaN", 1, [1])),
    ("negative width", "det", f"{ROW}\n2,-1,10,20,-30,40,0.9,-1,-1,-1\n", ("warn", r"1 with width or height <= 0", 1, [1])),
]


@pytest.mark.parametrize("kind, text, expected", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input(tmp_path, caplog, kind, text, expected):
    path = write(tmp_path, text)
    if expected[0] == "error":
        with pytest.raises(InputError, match=expected[1]) as info:
            read_mot(path, kind=kind)
        assert "\n" not in str(info.value)
        return
    _, message, kept, frames = expected
    with caplog.at_level(logging.INFO, logger=LOGGER):
        seq = read_mot(path, kind=kind)
    warnings = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
    if message is None:
        assert warnings == []
    else:
        assert len(warnings) == 1, warnings  # one summary line, not one per row
        assert re.search(message, warnings[0]), warnings[0]
    assert seq.num_boxes == kept
    assert seq.rows[:, 0].tolist() == frames
    assert sum(len(d) for d in seq.frames.values()) == kept


def test_sorting_keeps_file_order_within_a_frame(tmp_path, caplog):
    text = "2,7,1,1,5,5,1,-1,-1,-1\n1,9,1,1,5,5,1,-1,-1,-1\n2,3,1,1,5,5,1,-1,-1,-1\n1,4,1,1,5,5,1,-1,-1,-1\n"
    seq = read_mot(write(tmp_path, text), kind="tracks")
    assert seq.rows[:, :2].tolist() == [[1, 9], [1, 4], [2, 7], [2, 3]]
    assert seq.frames[2].tracker_id.tolist() == [7, 3]


def test_5000_boxes_in_one_frame(tmp_path):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1000, size=(5000, 2)).round(2)
    lines = [f"1,{i + 1},{x},{y},20,40,0.5,-1,-1,-1" for i, (x, y) in enumerate(xy)] + ["2,1,5,5,20,40,0.5,-1,-1,-1"]
    seq = read_mot(write(tmp_path, "\n".join(lines) + "\n"), kind="tracks")
    assert len(seq.frames[1]) == 5000 and len(seq.frames[2]) == 1
    assert len(seq.ids) == 5000


def test_sequence_checks_its_rows():
    with pytest.raises(InputError, match="kind"):
        MotSequence(np.zeros((0, 10)), kind="boxes")
    with pytest.raises(InputError, match=r"expected shape \[M,10\]"):
        MotSequence(np.zeros((2, 7)))
    with pytest.raises(InputError, match=r"expected finite values, got \[1.0, 1.0, nan"):
        MotSequence(np.array([[1, 1, np.nan, 0, 1, 1, 1, -1, -1, -1]], float))
    with pytest.raises(InputError, match="expected width and height > 0"):
        MotSequence(np.array([[1, 1, 0, 0, 0, 1, 1, -1, -1, -1]], float))
    with pytest.raises(InputError, match="expected whole ids >= 0"):
        MotSequence(np.array([[1, -1, 0, 0, 1, 1, 1, -1, -1, -1]], float))
    assert MotSequence(np.array([[1, -1, 0, 0, 1, 1, 1, -1, -1, -1]], float), kind="det").num_boxes == 1
    with pytest.raises(InputError, match="sorted by frame"):
        MotSequence(np.array([[2, 1, 0, 0, 1, 1, 1, -1, -1, -1], [1, 1, 0, 0, 1, 1, 1, -1, -1, -1]], float))
    empty = MotSequence(np.zeros((0, 10)))
    assert empty.num_frames == 0 and empty.frames == {}


def test_shared_det_files_read_cleanly(shared_data, caplog):
    files = sorted((shared_data / "mot15").glob("*/det.txt"))
    assert len(files) == 11
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        seqs = [read_mot(f) for f in files]
    assert caplog.records == []
    assert all(s.num_boxes > 0 and s.num_frames > 0 for s in seqs)
    gt = read_mot(shared_data / "mot15" / "TUD-Campus" / "gt.txt", kind="gt")
    assert (gt.name, gt.num_frames, gt.num_boxes, len(gt.ids)) == ("TUD-Campus", 71, 359, 8)


def test_every_real_file_reads_whole_through_the_number_checks(shared_data, caplog):
    """Every MOT15 det and gt file: read without a warning, every row kept (as many as the file has lines), and
    every frame a valid Detections within MAX_COORD, so the checks refuse nothing real."""
    from edgecv.detection.boxes import MAX_COORD

    files = [(f, "det") for f in sorted((shared_data / "mot15").glob("*/det.txt"))]
    files += [(f, "gt") for f in sorted((shared_data / "mot15").glob("*/gt.txt"))]
    assert len(files) == 12
    with caplog.at_level(logging.WARNING, logger="edgecv"):
        for path, kind in files:
            seq = read_mot(path, kind=kind)
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            assert seq.num_boxes == len(lines), path
            boxes = sum(len(d) for d in seq.frames.values())
            assert boxes == len(lines)
            assert all(np.isfinite(d.xyxy).all() and (np.abs(d.xyxy) <= MAX_COORD).all() for d in seq.frames.values())
    assert caplog.records == []


# --- ground truth's columns 8..10: which layout the file's values show -----------------------------------------

G = "1,1,10,20,30,40,1"  # frame, id, box, consider flag
# name, file text, layout (None: no layout fits), class_id of frame 1
LAYOUTS = [
    ("MOT15 2D", f"{G},-1,-1,-1\n", "2d", [-1]),
    ("7 columns", f"{G}\n", "2d", [-1]),
    ("MOT17: class and visibility", f"{G},1,0.83\n1,2,9,9,5,5,0,7,0.1\n", "classes", [1, 7]),
    ("MOT17 without visibility", f"{G},1\n1,2,9,9,5,5,1,12\n", "classes", [1, 12]),
    ("MOT17 in 10 columns", f"{G},1,1,-1\n", "classes", [1]),
    ("MOT15 3D: fractional x,y and z 0", f"{G},4.4852,5.5016,0\n1,2,9,9,5,5,1,-19.1,2.3,0\n", "world", [-1, -1]),
    ("MOT15 3D: z -1", f"{G},-19.1,2.3,-1\n", "world", [-1]),
    ("MOT15 3D: whole x,y", f"{G},3,5,0\n", "world", [-1]),
    ("class 0", f"{G},0,1,-1\n1,2,9,9,5,5,1,1,1,-1\n", None, [0, 1]),
    ("class 14", f"{G},14,1\n", None, [14]),
    ("fractional class in 9 columns", f"{G},1.5,1\n", None, [-1]),  # 1.5 is no class: not truncated to 1
    ("visibility 2", f"{G},1,2\n", None, [1]),
    ("some rows -1, some classes", f"{G},-1,-1,-1\n1,2,9,9,5,5,1,1,1,-1\n", None, [-1, 1]),
]


def motmetrics_data(corpus):
    data = corpus / "motmetrics" / "data"
    if not data.is_dir():
        if os.environ.get("EDGECV_CI"):
            pytest.fail(f"motmetrics is missing from the corpus at {corpus}: benchmarks/corpus.py --install adds it")
        pytest.skip(f"motmetrics is not in the corpus at {corpus} (python benchmarks/corpus.py --install)")
    return data


@pytest.mark.parametrize("text, layout, classes", [c[1:] for c in LAYOUTS], ids=[c[0] for c in LAYOUTS])
def test_gt_layout_from_the_values(tmp_path, text, layout, classes):
    from edgecv.tracking.mot import gt_layout

    gt = read_mot(write(tmp_path, text), kind="gt")
    assert gt.columns == len(text.splitlines()[0].split(","))
    assert gt.frames[1].class_id.tolist() == classes  # world coordinates are not classes
    assert gt_layout(gt, strict=False) == layout
    if layout is None:
        with pytest.raises(InputError, match=r"f\.txt: columns 8-10 fit no MOTChallenge ground-truth layout: .* in "
                           r"column 8.*; MOT15 rules \(benchmark MOT15\) ignore these columns") as info:
            gt_layout(gt)
        assert "\n" not in str(info.value)
    else:
        assert gt_layout(gt) == layout


def test_gt_layout_of_published_motchallenge_files(corpus, shared_data):
    """motmetrics ships MOTChallenge ground truth as published: TUD-Stadtmitte (MOT15 3D) with world coordinates."""
    from edgecv.tracking.mot import gt_layout

    data = motmetrics_data(corpus)
    stadtmitte = read_mot(data / "TUD-Stadtmitte" / "gt.txt", kind="gt")
    assert (stadtmitte.num_frames, stadtmitte.num_boxes, len(stadtmitte.ids), stadtmitte.columns) == (179, 1156, 10, 10)
    assert gt_layout(stadtmitte) == "world"
    assert stadtmitte.rows[0, 7:].tolist() == [4.4852, 5.5016, 0.0]  # kept as written
    assert set(np.concatenate([d.class_id for d in stadtmitte.frames.values()]).tolist()) == {-1}
    for path in (data / "TUD-Campus" / "gt.txt", shared_data / "mot15" / "TUD-Campus" / "gt.txt"):
        assert gt_layout(read_mot(path, kind="gt")) == "2d"
    with pytest.raises(InputError, match="expected a gt sequence, got a tracks sequence"):
        gt_layout(read_mot(data / "TUD-Stadtmitte" / "test.txt", kind="tracks"))


# rows given to MotSequence directly (not read from a file): the same number checks, one line naming the row
SEQUENCE_ROWS = [
    ([1, 1, 0, 0, 1e38, 1, 1], r"expected x\+w within \+-1e\+06 pixels, got \[1\.0, 1\.0, 0\.0, 0\.0, 1e\+38"),
    ([1, 1, -1e6, 0, 2e6, 1, 1], None),  # 2e6 wide, corners at +-1e6: a box the trackers take too
    ([1, 1, 999999, 0, 2, 1, 1], r"expected x\+w within \+-1e\+06 pixels"),
    ([1, 1, 0, 0, 1, 1, 1e39], r"expected a score within float32"),
    ([1, 2.0**60, 0, 0, 1, 1, 1], r"expected ids up to 2\*\*53"),
    ([1, 1, 0, 0, 1, 1, -5.5], None),
]


@pytest.mark.parametrize("row, expected", SEQUENCE_ROWS)
def test_sequence_rows_numbers(row, expected):
    rows = np.array([row + [-1, -1, -1]], np.float64)
    if expected is None:
        assert MotSequence(rows).frames[1].xyxy.tolist() == [[row[2], row[3], row[2] + row[4], row[3] + row[5]]]
        return
    with pytest.raises(InputError, match=expected) as info:
        MotSequence(rows)
    assert "\n" not in str(info.value)


def test_tracker_output_past_max_coord_is_refused_by_from_frames():
    d = Detections(np.array([[0, 0, 2e6, 10]]), [0.9], [0], tracker_id=[1])
    with pytest.raises(InputError, match=r"<tracker output>: expected x\+w within \+-1e\+06 pixels"):
        MotSequence.from_frames({1: d})


@pytest.mark.parametrize(
    "column8, classes",
    [("3", [3]), ("-1", [-1]), ("4.4852", [-1]), ("1e20", [-1]), ("-7", [-1])],
)
def test_det_class_column_is_never_truncated_or_wrapped(tmp_path, column8, classes):
    seq = read_mot(write(tmp_path, f"1,-1,10,20,30,40,0.9,{column8},-1,-1\n"), kind="det")
    assert seq.frames[1].class_id.tolist() == classes
