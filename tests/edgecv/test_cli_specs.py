"""``edgecv specs list|show``: the built-in detector specs as a table or JSON, one spec's YAML, one-line errors."""

from __future__ import annotations

import json

import pytest
import yaml

from edgecv.cli.main import COMMANDS, EPILOG, main
from edgecv.detection import DetectorSpec, load_spec, spec_names
from edgecv.detection.spec import SPEC_DIR


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_is_registered_and_in_the_epilog():
    assert COMMANDS["specs"].module == "edgecv.cli.specs_cmd" and COMMANDS["specs"].side == "device"
    assert "edgecv specs list" in EPILOG


def test_list_is_a_table_of_every_built_in_spec(capsys):
    code, out, _ = run(capsys, "specs", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["spec", "decoder", "input", "classes", "resize", "score", "nms"]
    rows = {line.split()[0]: line for line in lines[2:] if line.strip() and not line.startswith("'")}
    assert sorted(rows) == spec_names()
    palm = rows["palm-detection"].split()
    assert palm[:8] == ["palm-detection", "ssd_anchors", "192x192", "RGB", "[0,1]", "1", "(palm)", "letterbox"]
    assert rows["blazeface-full-range"].split()[2:5] == ["192x192", "RGB", "[-1,1]"]
    assert "stretch" in rows["ssd-mobilenet-v1-coco"] and "none" in rows["ssd-mobilenet-v1-coco"]
    assert "4 (disc, box, triangle, ...)" in rows["scene-detector"]


def test_list_json_gives_every_field_of_every_spec(capsys):
    code, out, _ = run(capsys, "specs", "list", "--json")
    assert code == 0
    items = json.loads(out)
    assert [i["name"] for i in items] == spec_names()
    for item in items:
        assert DetectorSpec.from_dict(item["spec"]) == load_spec(item["name"])
    pose = next(i for i in items if i["name"] == "pose-detection")
    assert (pose["input_size"], pose["classes"], pose["resize"], pose["input_range"]) == ([224, 224], 1, "letterbox",
                                                                                         [-1.0, 1.0])


@pytest.mark.parametrize("name", spec_names())
def test_show_prints_the_yaml_file_as_written(capsys, name):
    code, out, _ = run(capsys, "specs", "show", name)
    assert code == 0
    text = (SPEC_DIR / f"{name}.yaml").read_text()
    assert out == text.rstrip("\n") + "\n"
    assert DetectorSpec.from_dict(yaml.safe_load(out)) == load_spec(name)


def test_show_checks_a_spec_file_and_json_fills_in_the_defaults(capsys, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("decoder: yolo\ndecoder_options: {num_classes: 2}\nlabels: [cat, dog]\nresize: letterbox\n"
                    "input_size: [320, 320]\nlayout: NCHW\n")
    code, out, _ = run(capsys, "specs", "show", str(path))
    assert code == 0 and out == path.read_text()
    code, out, _ = run(capsys, "specs", "show", str(path), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["path"] == str(path) and shown["name"] == "mine" and shown["input_size"] == [320, 320]
    assert shown["spec"]["nms"] == {"iou_threshold": 0.5, "method": "hard", "class_agnostic": False, "top_k": None}
    assert shown["spec"]["decoder_options"]["layout"] == "auto" and shown["spec"]["pad_value"] is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("decoder: yolo\nresize: crop\n", "resize: expected one of stretch, letterbox, letterbox_top_left, got 'crop'"),
        ("decoder: yolo\nscore: 0.5\n", "unknown key(s) score; valid keys: decoder, decoder_options, name"),
        (None, "unknown detector spec 'palm'; built-in specs: blazeface-back, blazeface-full-range"),
    ],
)
def test_show_of_a_wrong_spec_is_one_line_and_exit_1(capsys, tmp_path, content, message):
    target = "palm"
    if content is not None:
        target = str(tmp_path / "bad.yaml")
        (tmp_path / "bad.yaml").write_text(content)
    code, out, err = run(capsys, "specs", "show", target)
    assert code != 0 and out == ""
    assert err.startswith("edgecv: error: ") and message in err and err.count("\n") == 1


def test_help_names_the_docs(capsys):
    with pytest.raises(SystemExit):
        main(["specs", "--help"])
    assert "docs/specs.md" in capsys.readouterr().out
