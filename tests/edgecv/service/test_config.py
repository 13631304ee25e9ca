"""The ``edgecv serve`` config: a good file loads; every bad one is a one-line error naming the file, the line
where there is one, and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecv.errors import ConfigError
from edgecv.service.config import load_config
from edgecv.sources import redact

GOOD = """\
server: {host: 127.0.0.1, port: 8080}
batch: {max_size: 8, max_wait_ms: 2}
out: runs/serve
streams:
  - id: door
    source: rtsp://admin:secret@10.0.0.7/stream1
    model: artifacts/
    classes: [person]
    lines: ["door=100,400,600,400"]
    zones: ["lot=0,0,100,0,100,50"]
    sinks: [jsonl, mot]
  - id: demo_2
    source: synthetic:fps=15,frames=0
    model: artifacts/
    tracker: bytetrack
    tracker_options: {max_lost_s: 2.0}
"""


def write(tmp_path, text: str):
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    return path


def test_a_good_config_loads_with_its_defaults(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert [s.id for s in config.streams] == ["door", "demo_2"]
    assert (config.batch.max_size, config.batch.max_wait_ms) == (8, 2.0)
    door, demo = config.streams
    assert door.classes == ("person",) and door.sinks == ("jsonl", "mot") and door.lines == ("door=100,400,600,400",)
    assert (demo.tracker, demo.tracker_options, demo.ready_s, demo.sinks) == ("bytetrack", {"max_lost_s": 2.0}, 5.0, ())


STREAM = "streams:\n  - {id: a, source: synthetic, model: m.onnx}\n"


@pytest.mark.parametrize("text, message", [
    (STREAM + "sever: {port: 1}\n", "serve.yaml line 3: unknown field 'sever' (did you mean 'server'?); valid fields: streams, server, batch, mqtt, swap, out"),
    ("streams:\n  - {id: a, source: synthetic, model: m.onnx, sinks: [video]}\n", "stream 'a': sinks: unknown video; valid sinks: jsonl, mot"),
    ("streams:\n  - {id: a, source: synthetic, modle: m.onnx}\n", "unknown key(s) modle; valid keys: id, source, model"),
    ("streams:\n  - {id: a, source: synthetic}\n", "missing key(s) model"),
    ("streams: []\n", "streams: expected at least one stream"),
    ("streams:\n  - {id: a, source: synthetic, model: m}\n  - {id: a, source: synthetic, model: m}\n", "stream id 'a' appears twice"),
    ("streams:\n  - {id: 'a b', source: synthetic, model: m}\n", "stream id 'a b': expected letters, digits, '-' or '_'"),
    (STREAM + "server: {host: 0.0.0.0}\n", "server.host '0.0.0.0' is reachable from other machines: set server.token"),
    (STREAM + "server: {host: 0.0.0.0, token: short}\n", "server.token: expected at least 16 characters, got 5"),
    (STREAM + "server: {port: 70000}\n", "server.port: expected 0..65535, got 70000"),
    (STREAM + "server: {processes: 0}\n", "server.processes: expected 1..64, got 0"),
    (STREAM + "server: {port: eighty}\n", "server.port: expected an integer, got 'eighty'"),
    (STREAM + "batch: {max_size: 0}\n", "batch.max_size: expected 1..64, got 0"),
    ("streams:\n  - {id: a, source: synthetic, model: m, lines: ['1,2,1,2']}\n", "stream 'a': line '1,2,1,2': expected two different end points"),
    ("streams:\n  - {id: a, source: synthetic, model: m, tracker: kalman}\n", "stream 'a': tracker: unknown name 'kalman'; valid names: bytetrack, ocsort, sort"),
    ("streams:\n  - {id: a, source: synthetic, model: m, score: 2}\n", "stream 'a': score: expected a number in [0, 1], got 2.0"),
    ("streams:\n  - {id: a, source: synthetic, model: m, labels: [a], labels_file: l.txt}\n",
     "stream 'a': labels and labels_file: expected one of the two, got both"),
    ("streams: [\n", "cannot read serve config"),
    (STREAM + "mqtt: {port: 1883}\n", "serve.yaml line 3: missing field(s) host in mqtt"),
    (STREAM + "mqtt: {host: broker, prefix: 'a/#'}\n", "mqtt.prefix: expected a topic without wildcards"),
    (STREAM + "mqtt: {host: broker, queue_max: 0}\n", "mqtt.queue_max: expected >= 1, got 0"),
    (STREAM + "swap: {latency_ratio: 1}\n", "swap.latency_ratio: expected a number > 1, got 1"),
    (STREAM + "swap: {check_frames: 100}\n", "swap.check_frames: expected 0..64 (0: no check before the switch), got 100"),
    (STREAM + "swap: {probaton_s: 5}\n", "line 3: unknown field 'probaton_s' in swap (did you mean 'probation_s'?)"),
    (STREAM + "swap: {latency_ms: -1}\n", "swap.latency_ms: expected milliseconds > 0, got -1"),
    (STREAM + "swap: {device: toaster}\n", "swap.device: unknown device 'toaster'; known devices: android-phone"),
    (STREAM + "swap: {device: ci-x86-64-avx2}\n", "swap.device: the profile 'ci-x86-64-avx2' has no budgets.latency_ms"),
])
def test_bad_configs_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(tmp_path / "serve.yaml") in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="serve config not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text, expected", [
    ("rtsp://admin:secret@10.0.0.7/s", "rtsp://***@10.0.0.7/s"),
    ("cannot open http://u:p@cam/x and rtsp://v@cam2/y", "cannot open http://***@cam/x and rtsp://***@cam2/y"),
    ("rtsp://10.0.0.7/s", "rtsp://10.0.0.7/s"),
    ("synthetic:fps=15", "synthetic:fps=15"),
])
def test_credentials_in_source_urls_are_hidden(text, expected):
    assert redact(text) == expected



def test_the_readme_example_config_loads(tmp_path):
    """The config the README's serve section writes, as written there."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    start = readme.index("cat > serve.yaml <<'YAML'\n") + len("cat > serve.yaml <<'YAML'\n")
    text = readme[start:readme.index("\nYAML\n", start)]
    config = load_config(write(tmp_path, text))
    assert [s.id for s in config.streams] == ["lobby", "door"] and config.server.host == "127.0.0.1"


def test_a_device_profile_gives_the_latency_budget_of_a_swap(tmp_path):
    config = load_config(write(tmp_path, STREAM + "swap: {device: raspberry-pi-4}\n"))
    assert config.swap.budget_ms() == 33.0
    config = load_config(write(tmp_path, STREAM + "swap: {device: raspberry-pi-4, latency_ms: 50}\n"))
    assert config.swap.budget_ms() == 50.0  # the config's own budget first
