import json

import pytest

from edgecv.errors import ManifestError
from edgecv.manifest import Manifest, Preprocess, find_manifest, manifest_path


def test_round_trip_through_a_file_keeps_every_field(tmp_path):
    m = Manifest(
        format="tflite",
        precision="fp16",
        artifact="m.fp16.tflite",
        inputs=[{"name": "x", "shape": [1, 4], "dtype": "float32", "layout": "NC"}],
        preprocess=Preprocess(layout="NCHW", color="BGR", mean=(1, 2, 3), std=(4, 5, 6)),
        labels=["a", "b"],
        source={"sha256": "00"},
        extra={"future_key": 1},
    )
    path = m.write(tmp_path / "m.json")
    back = Manifest.read(path)
    assert back.preprocess == m.preprocess
    assert back.labels == ["a", "b"] and back.extra == {"future_key": 1}
    assert back.created  # stamped on write


def test_manifest_sits_beside_the_artifact(tmp_path):
    assert manifest_path(tmp_path / "m.fp32.xml") == tmp_path / "m.fp32.xml.json"
    assert find_manifest(tmp_path / "absent.onnx") is None


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"precision": "fp32"}', "missing required key 'format'"),
        ('{"schema": "other/9", "format": "onnx", "precision": "fp32"}', "schema"),
        ('{"format": "onnx", "precision": "fp32", "preprocess": {"color": "CMYK"}}', "expected one of RGB, BGR, GRAY"),
        ('{"format": "onnx", "precision": "fp32", "preprocess": {"std": [0]}}', "non-zero"),
        ('{"format": "onnx", "precision": "fp32", "preprocess": {"bogus": 1}}', "bogus"),
    ],
)
def test_bad_manifests_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "m.onnx.json"
    path.write_text(content)
    with pytest.raises(ManifestError, match=message) as info:
        Manifest.read(path)
    assert "\n" not in str(info.value)


def test_input_range_of_common_normalizations():
    assert Preprocess(mean=(127.5,), std=(127.5,)).input_range == (-1.0, 1.0)
    assert Preprocess(mean=(0,), std=(255,)).input_range == (0.0, 1.0)
    assert json.loads(json.dumps(Manifest("onnx", "fp32").to_dict()))["schema"] == "edgecv.manifest/1"
