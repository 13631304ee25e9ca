"""The one labels reader (edgecv.labels): line k is class k, whatever command reads the file."""

import doctest
from pathlib import Path

import pytest

import edgecv.labels
from edgecv.cli.options import read_labels as options_read_labels
from edgecv.detection.ground_truth import read_yolo_ground_truth
from edgecv.detection.spec import load_spec
from edgecv.errors import ConfigError, InputError
from edgecv.labels import label_of, names_by_id, read_labels

SSD_LABELMAP = Path(__file__).resolve().parents[3] / "shared" / "data" / "models" / "ssd_mobilenet_v1_coco_quant" / "labelmap.txt"

LABELS = [
    # (case, file name, bytes, expected names or None, expected error)
    ("one per line", "l.txt", b"cat\ndog\n", ("cat", "dog"), None),
    ("no final newline", "l.txt", b"cat\ndog", ("cat", "dog"), None),
    ("blank line inside keeps the ids after it", "l.txt", b"???\nperson\n\nbicycle\n", ("???", "person", "", "bicycle"), None),
    ("blank lines at the end are not classes", "l.txt", b"cat\ndog\n\n\n  \n", ("cat", "dog"), None),
    ("blank first line is class 0", "l.txt", b"\ncat\n", ("", "cat"), None),
    ("CRLF", "l.txt", b"cat\r\ndog\r\n", ("cat", "dog"), None),
    ("old Mac CR", "l.txt", b"cat\rdog\r", ("cat", "dog"), None),
    ("byte-order mark", "l.txt", b"\xef\xbb\xbfcat\ndog\n", ("cat", "dog"), None),
    ("surrounding spaces", "l.txt", b"  traffic light \t\n", ("traffic light",), None),
    ("placeholders are names", "l.txt", b"???\nperson\n???\n", ("???", "person", "???"), None),
    ("empty file", "l.txt", b"", None, "names no class"),
    ("only blank lines", "l.txt", b"\n \r\n", None, "names no class"),
    ("not UTF-8", "l.txt", b"caf\xe9\n", None, "cannot read labels file"),
    ("YAML list", "data.yaml", b"names: [cat, dog]\n", ("cat", "dog"), None),
    ("YAML mapping with a gap", "data.yml", b"names: {0: cat, 2: dog}\n", ("cat", "", "dog"), None),
    ("YAML without names", "data.yaml", b"nc: 2\n", None, "expected a 'names' list"),
    ("YAML negative id", "data.yaml", b"names: {-1: cat}\n", None, "expected a 'names' list"),
    ("YAML empty names", "data.yaml", b"names: []\n", None, "names no class"),
    ("bad YAML", "data.yaml", b"names: [cat\n", None, "cannot read labels file"),
]


@pytest.mark.parametrize("case, name, data, names, error", LABELS, ids=[c[0] for c in LABELS])
def test_labels_file_table(tmp_path, case, name, data, names, error):
    path = tmp_path / name
    path.write_bytes(data)
    if error:
        with pytest.raises(InputError, match=error) as info:
            read_labels(path)
        assert "\n" not in str(info.value)
    else:
        assert read_labels(path) == names


def test_missing_file_is_one_line():
    with pytest.raises(InputError, match="^labels file not found: nowhere.txt$"):
        read_labels("nowhere.txt")


def test_every_caller_reads_the_same_ids(tmp_path):
    """The CLI's --labels (export, optimize, detect, track), a spec's labels file and a YOLO classes.txt."""
    path = tmp_path / "classes.txt"
    path.write_text("person\n\ncar\n\n")
    assert options_read_labels(path) == ["person", "", "car"]
    (tmp_path / "s.yaml").write_text("decoder: tflite_postprocess\nlabels: classes.txt\nnms: null\n")
    assert load_spec(tmp_path / "s.yaml").labels == ("person", "", "car")
    (tmp_path / "0.txt").write_text("2 0.5 0.5 0.1 0.1\n")
    assert read_yolo_ground_truth(tmp_path, image_size=(64, 64)).categories == {0: "person", 2: "car"}


def test_a_spec_with_an_empty_labels_file_is_a_config_error(tmp_path):
    (tmp_path / "l.txt").write_text("\n")
    (tmp_path / "s.yaml").write_text("decoder: tflite_postprocess\nlabels: l.txt\nnms: null\n")
    with pytest.raises(ConfigError, match=r"s.yaml: labels: labels file .*l.txt names no class"):
        load_spec(tmp_path / "s.yaml")


@pytest.mark.skipif(not SSD_LABELMAP.is_file(), reason="../shared/data is absent")
def test_tflite_ssd_labelmap_line_is_class_id():
    names = read_labels(SSD_LABELMAP)
    lines = SSD_LABELMAP.read_text().splitlines()
    assert len(names) == len(lines) == 91 and names == tuple(lines)
    assert (names[0], names[1], names[3], names[12], names[13], names[90]) == ("???", "person", "car", "???", "stop sign",
                                                                           "toothbrush")


@pytest.mark.parametrize(
    "labels, class_id, expected",
    [(("cat", "dog"), 1, "dog"), (("cat", ""), 1, "1"), (("cat",), 5, "5"), (("cat",), -1, "-1"), (None, 0, "0")],
)
def test_label_of(labels, class_id, expected):
    assert label_of(labels, class_id) == expected


def test_names_by_id_leaves_unnamed_classes_out():
    assert names_by_id(("???", "", "car")) == {0: "???", 2: "car"}


def test_module_example_runs():
    assert doctest.testmod(edgecv.labels).failed == 0
