"""The model store (edgecv/store.py, ``edgecv models``): install, activate, rollback, remove and history on real
artifacts; bad inputs refused in one line with nothing installed; two installs at once; ``kill -9`` at every
step of a change leaving the store as before or as after (checked by loading every listed version); and
``edgecv track --model store:NAME`` running the active version with the spec installed with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import edgecv
from edgecv.errors import ConfigError, IntegrityError, ModelFileError
from edgecv.store import HISTORY, ModelStore, model_source
from tests.conftest import make_tiny_onnx
from tests.edgecv.test_integrity import write_manifest

pytest.importorskip("onnxruntime")


def edgecv_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def artifact(folder: Path, name: str = "tiny.onnx", *, seed: int = 0, manifest: bool = True) -> Path:
    """A tiny CNN as ONNX (batch 1), with the manifest an export writes (its file's SHA-256)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = make_tiny_onnx(folder / name, batch=1, seed=seed)
    if manifest:
        write_manifest(path, validation={"status": "passed", "eval": {"drop_points": 0.5, "scores": {"samples": 8}}})
    return path


def runs(path: Path) -> np.ndarray:
    model = edgecv.load(path)
    return model.run(np.zeros((1, 3, 8, 8), np.float32))[0]


def stray(store: ModelStore) -> list[str]:
    """Folders in the store that no installed version accounts for."""
    live = {str(v.path.parent) for n in store.names() for v in store.versions(n)}
    return sorted(str(p.relative_to(store.root)) for p in store.root.glob("*/*") if p.is_dir() and str(p) not in live)


def test_install_activate_rollback_remove_and_history(tmp_path):
    store = ModelStore(tmp_path / "store")
    a, b = artifact(tmp_path / "a", seed=0), artifact(tmp_path / "b", seed=1)
    v1 = store.install(a, name="det", reason="first")
    v2 = store.install(b, name="det", reason="retrained")
    assert (v1.number, v1.active, v2.number, v2.active) == (1, True, 2, False)  # the first is active, not the next
    assert v2.record["p50_ms"] > 0 and v2.record["backend"] == "onnxruntime"
    assert v2.record["validation"] == {"status": "passed", "drop_points": 0.5, "samples": 8}
    assert sorted(p.name for p in v2.path.parent.iterdir()) == ["tiny.onnx", "tiny.onnx.json"]
    assert np.array_equal(runs(v2.path), runs(b)) and not np.array_equal(runs(v1.path), runs(v2.path))

    assert store.activate("det", 2, reason="canary passed").active
    assert store.resolve("store:det").number == 2 and store.resolve("store:det@1").number == 1
    assert store.rollback("det", reason="misses at night").number == 1
    assert store.active("det").number == 1
    with pytest.raises(ConfigError, match="is the active version of 'det'"):
        store.remove("det", 1)
    assert store.remove("det", 2, reason="bad") == [2]
    assert [v.number for v in store.versions("det")] == [1] and not (store.root / "det" / "v2").exists()
    v3 = store.install(b, name="det", activate=True)
    assert v3.number == 3 and v3.active  # numbers are never reused

    events = store.history("det")
    assert [(e["action"], e["version"], e.get("reason", "")) for e in events] == [
        ("install", 1, "first"), ("install", 2, "retrained"), ("activate", 2, "canary passed"),
        ("rollback", 1, "misses at night"), ("remove", 2, "bad"), ("install", 3, "")]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[3]["previous"] == 2
    assert store.check() == [] and stray(store) == []


def test_cli_round_trip_with_a_real_detector_and_its_spec(tmp_path, shared_data):
    """SSD MobileNet as shipped (no manifest): installed with its built-in spec, listed, and tracked by name."""
    store = tmp_path / "store"
    ssd = shared_data / "models" / "ssd_mobilenet_v1_coco_quant" / "detect.tflite"
    r = edgecv_cli("models", "install", ssd, "--name", "people", "--spec", "ssd-mobilenet-v1-coco", "--reason",
                   "as shipped", "--store", store)
    assert r.returncode == 0, r.stderr
    assert "installed people version 1: detect.tflite, p50 here" in r.stdout and "active" in r.stdout
    listed = json.loads(edgecv_cli("models", "list", "--json", "--store", store).stdout)
    assert [(x["name"], x["version"], x["active"], x["precision"], x["format"]) for x in listed] == [
        ("people", 1, True, "int8", "tflite")]
    env = {**os.environ, "EDGECV_STORE": str(store)}
    out = tmp_path / "track"
    r = edgecv_cli("track", "--model", "store:people", "--source", shared_data / "video" / "vtest.avi", "--out", out,
                   "--sinks", "jsonl", "--max-frames", "30", "--json", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == str(store / "people" / "v1" / "detect.tflite")
    assert summary["spec"] == "ssd-mobilenet-v1-coco" and summary["frames"] == 30
    r = edgecv_cli("track", "--model", "store:nobody", "--source", "synthetic:frames=5", "--out", tmp_path / "t2", env=env)
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("edgecv: error: no model 'nobody' in the store")
    assert "people" in r.stderr


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


BAD_INSTALLS = [
    # (case, change made to the artifact, error class, message)
    ("truncated, with its manifest", lambda p: _cut(p), IntegrityError, r"does not match its manifest"),
    ("truncated, no manifest", lambda p: (p.with_name(p.name + ".json").unlink(), _cut(p)), ModelFileError,
     r"bad/tiny\.onnx is corrupted: .* runs past its message"),
    ("changed after export", lambda p: _flip(p), IntegrityError, r"sha256 expected [0-9a-f]{12}, got"),
    ("manifest lists another hash", lambda p: write_manifest(p, files={p.name: "0" * 64}) and None, IntegrityError,
     r"does not match its manifest"),
    ("missing file", lambda p: p.unlink(), ModelFileError, r"model file not found"),
    ("not a model", lambda p: p.rename(p.with_suffix(".h5")), ModelFileError, r"unknown model extension '\.h5'"),
]


@pytest.mark.parametrize("case, change, error, message", BAD_INSTALLS, ids=[c[0] for c in BAD_INSTALLS])
def test_a_bad_artifact_is_refused_in_one_line_and_nothing_is_installed(tmp_path, case, change, error, message):
    store = ModelStore(tmp_path / "store")
    store.install(artifact(tmp_path / "good"), name="det")
    before = (store.root / HISTORY).read_bytes()
    bad = artifact(tmp_path / "bad")
    moved = change(bad)  # a Path when the change renamed the file
    with pytest.raises(error, match=message) as caught:
        store.install(moved if isinstance(moved, Path) else bad, name="det")
    assert "\n" not in str(caught.value)
    assert (store.root / HISTORY).read_bytes() == before
    assert [v.number for v in store.versions("det")] == [1] and stray(store) == []


@pytest.mark.parametrize("call, message", [
    (lambda s: s.activate("det", 7), r"model 'det' has no version 7 in the store .*; versions: 1"),
    (lambda s: s.activate("cat", 1), r"no model 'cat' in the store .*; models: det"),
    (lambda s: s.remove("det", 3), r"has no version 3"),
    (lambda s: s.resolve("store:det@x"), r"expected store:NAME or store:NAME@VERSION"),
    (lambda s: s.rollback("det"), r"no earlier active version to roll back to \(active: 1\)"),
    (lambda s: s.install("x.onnx", name="../up"), r"model name '\.\./up': expected letters"),
], ids=["no such version", "no such model", "remove missing", "bad reference", "nothing to roll back", "bad name"])
def test_bad_requests_are_one_line_errors_and_change_nothing(tmp_path, call, message):
    store = ModelStore(tmp_path / "store")
    store.install(artifact(tmp_path / "a"), name="det")
    before = (store.root / HISTORY).read_bytes()
    with pytest.raises(ConfigError, match=message):
        call(store)
    assert (store.root / HISTORY).read_bytes() == before


def test_two_installs_at_once_get_two_versions(tmp_path):
    store = tmp_path / "store"
    a, b = artifact(tmp_path / "a", seed=0), artifact(tmp_path / "b", seed=1)
    procs = [subprocess.Popen([sys.executable, "-m", "edgecv", "models", "install", str(p), "--name", "det", "--store",
                               str(store), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in (a, b)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert sorted(json.loads(o[0])["version"] for o in outs) == [1, 2]
    s = ModelStore(store)
    assert sorted(e["seq"] for e in s.history()) == [1, 2]
    got = {s.version("det", n).record["files"]["tiny.onnx"] for n in (1, 2)}
    assert len(got) == 2  # each install kept its own file
    for v in s.versions("det"):
        runs(v.path)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from edgecv.store import ModelStore

    class Killed(ModelStore):
        def checkpoint(self, step):
            if step == sys.argv[3]:
                os.kill(os.getpid(), signal.SIGKILL)

    store = Killed(sys.argv[1])
    if sys.argv[2] == "install":
        store.install(sys.argv[4], name="det", activate=True)
    elif sys.argv[2] == "activate":
        store.activate("det", 1)
    else:
        store.remove("det", 2)
""")


@pytest.mark.parametrize("change, step, after", [
    ("install", "copied", False), ("install", "loaded", False), ("install", "renamed", False),
    ("install", "recorded", True), ("activate", "recorded", True), ("remove", "recorded", True),
    ("remove", "deleted", True),
])
def test_kill_9_at_each_step_leaves_the_store_as_before_or_after(tmp_path, change, step, after):
    store = ModelStore(tmp_path / "store")
    store.install(artifact(tmp_path / "a", seed=0), name="det")
    store.install(artifact(tmp_path / "b", seed=1), name="det", activate=True)
    new = artifact(tmp_path / "c", seed=2)
    before = {"versions": [1, 2], "active": 2}
    done = {"install": {"versions": [1, 2, 3], "active": 3}, "activate": {"versions": [1, 2], "active": 1},
            "remove": None}[change]
    if change == "remove":
        store.activate("det", 1)
        before, done = {"versions": [1, 2], "active": 1}, {"versions": [1], "active": 1}
    r = subprocess.run([sys.executable, "-c", KILLER, str(store.root), change, step, str(new)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == -9, r.stderr
    state = {"versions": [v.number for v in store.versions("det")], "active": store.active("det").number}
    assert state == (done if after else before)
    for v in store.versions("det"):  # every listed version loads and runs
        runs(v.path)
    store.install(artifact(tmp_path / "d", seed=3), name="det")  # the next change repairs what the kill left
    assert stray(store) == [] and store.check() == []
    assert not list(store.root.glob("det/.incoming-*"))


def test_a_torn_last_line_is_a_change_that_did_not_happen(tmp_path):
    store = ModelStore(tmp_path / "store")
    store.install(artifact(tmp_path / "a"), name="det")
    store.install(artifact(tmp_path / "b", seed=1), name="det")
    history = store.root / HISTORY
    with open(history, "ab") as f:
        f.write(b'{"seq": 3, "action": "activate", "name": "det", "vers')
    assert store.active("det").number == 1 and len(store.history()) == 2
    store.activate("det", 2)
    assert [e["action"] for e in store.history()] == ["install", "install", "activate"]
    assert history.read_bytes().count(b"\n") == 3 and history.read_bytes().endswith(b"\n")
    with open(history, "ab") as f:
        f.write(b'not json\n')
    with pytest.raises(IntegrityError, match=r"history.jsonl, line 4: not a change edgecv wrote"):
        store.versions("det")


def test_check_finds_a_changed_file_and_model_source_passes_paths_through(tmp_path):
    store = ModelStore(tmp_path / "store")
    v = store.install(artifact(tmp_path / "a"), name="det", spec="ssd-mobilenet-v1-coco", labels=_labels(tmp_path))
    assert model_source("store:det", store=store) == (v.path, "ssd-mobilenet-v1-coco", ("cat", "dog"))
    assert model_source("store:det", spec="mine.yaml", labels=("x",), store=store) == (v.path, "mine.yaml", ("x",))
    assert model_source(tmp_path / "m.onnx") == (tmp_path / "m.onnx", None, None)
    _flip(v.path)
    assert store.check() == ["det version 1: tiny.onnx does not match the hash recorded at install"]
    r = edgecv_cli("models", "check", "--store", store.root)
    assert r.returncode == 1 and "does not match" in r.stdout
    shutil.rmtree(v.path.parent)
    assert store.check() == ["det version 1: tiny.onnx is missing", "det version 1: tiny.onnx.json is missing"]


def _labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("cat\ndog\n")
    return path
