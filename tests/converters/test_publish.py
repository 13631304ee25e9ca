"""Publication (edgecv.converters.publish) on plain files, in both modes: the new set replaces the old one as a
whole, the user's files stay, a refusal or an error leaves ``out`` as it was, and stale folders are swept.

The moments inside a publish are reached through its stage hook (``publish.stage``), the boundaries
tests/converters/test_publish_kills.py kills a real export at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgecv.converters import publish
from edgecv.converters.publish import MODE_ENV, Publication, stale_staging, sweep_for
from edgecv.errors import OutputError

MODES = ("swap", "inplace")
OLD = {"m.fp32.xml": "old xml", "m.fp32.bin": "old bin", "m.fp32.xml.json": "old manifest", "report.json": "old report",
       "_failed/x.onnx": "old failed"}
NEW = {"m.fp32.xml": "new xml", "m.fp32.bin": "new bin", "m.fp32.xml.json": "new manifest", "report.json": "new report",
       "sub/deep/n.txt": "new deep"}
USER = {"notes.txt": "mine", "mine/keep.txt": "kept", "other.fp32.onnx": "another model's artifact"}


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its text (edgecv's temporary entries included: they must not be there)."""
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _temps(out: Path) -> list[str]:
    """edgecv's temporary entries inside ``out`` and beside it."""
    inside = [p.name for p in out.rglob(".edgecv-*")] if out.exists() else []
    return inside + [p.name for p in out.parent.iterdir() if ".edgecv-" in p.name]


@pytest.fixture
def out(tmp_path) -> Path:
    folder = tmp_path / "OUT"
    _write(folder, {**OLD, **USER})
    return folder


class Stages(list):
    """The stages publications pass, in order; ``hooks[name]`` runs once when ``name`` is passed."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: dict = {}

    def __call__(self, name: str) -> None:
        self.append(name)
        if name in self.hooks:
            self.hooks.pop(name)()


@pytest.fixture
def stages(monkeypatch) -> Stages:
    passed = Stages()
    monkeypatch.setattr(publish, "stage", passed)
    return passed


@pytest.mark.parametrize("mode", MODES)
def test_the_new_set_replaces_the_old_one_and_the_users_files_stay(out, mode, stages):
    with Publication(out, mode=mode) as pub:
        assert pub.mode == mode
        _write(pub.staging, NEW)
        (pub.work / "scratch.bin").write_text("scratch")
        assert {k: v for k, v in _tree(out).items() if not k.startswith(".edgecv-")} == {**OLD, **USER}  # not published yet
        pub.publish()
    assert _tree(out) == {**OLD, **USER, **NEW}  # old names not in the new set (another run's) stay
    assert _temps(out) == []
    assert stages[0] == "staged" and stages[-1] == "published"
    assert pub.final(pub.staging / "m.fp32.xml") == out / "m.fp32.xml"


@pytest.mark.parametrize("mode", MODES)
def test_a_discarded_name_goes_with_the_old_set(out, mode):
    with Publication(out, mode=mode) as pub:
        _write(pub.staging, NEW)
        pub.discard("_failed/x.onnx")
        pub.publish()
    assert "_failed/x.onnx" not in _tree(out)
    assert _tree(out)["m.fp32.xml"] == "new xml"


def test_in_place_renames_companions_then_the_artifact_then_its_manifest_and_the_report_last(out, stages):
    with Publication(out, mode="inplace") as pub:
        _write(pub.staging, NEW)
        pub.publish()
    moved = [s.removeprefix("moved:") for s in stages if s.startswith("moved:")]
    assert moved == ["sub/deep/n.txt", "m.fp32.bin", "m.fp32.xml", "m.fp32.xml.json", "report.json"]


def test_files_another_program_writes_into_out_while_it_is_swapped_are_kept(out, stages):
    """After the link pass and before the exchange, another program adds a file and replaces one: both end up
    in the new ``out``, not in the old folder that is removed."""

    def meanwhile() -> None:
        (out / "late.txt").write_text("written during the publish")
        (out / "mine" / "keep.txt.tmp").write_text("kept, edited")
        os.replace(out / "mine" / "keep.txt.tmp", out / "mine" / "keep.txt")

    stages.hooks["linked"] = meanwhile
    with Publication(out, mode="swap") as pub:
        _write(pub.staging, NEW)
        pub.publish()
    assert stages[-4:] == ["linked", "swapped", "rescued", "published"]
    assert _tree(out) == {**OLD, **USER, **NEW, "late.txt": "written during the publish", "mine/keep.txt": "kept, edited"}
    assert _temps(out) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("theirs, ours, message", [
    ({"m.fp32.xml/inside.txt": "a folder in out"}, {"a.txt": "new a", "m.fp32.xml": "new xml"}, "is a folder where a file goes"),
    ({"sub": "a file in out"}, {"a.txt": "new a", "sub/n.txt": "new"}, "is a file where a folder goes"),
])
def test_a_conflict_is_one_line_and_leaves_out_as_it_was(tmp_path, mode, theirs, ours, message):
    out = tmp_path / "OUT"
    _write(out, {"a.txt": "old a", **theirs})
    before = _tree(out)
    with pytest.raises(OutputError, match=message) as err:
        with Publication(out, mode=mode) as pub:
            _write(pub.staging, ours)
            pub.publish()
    assert "\n" not in str(err.value)
    assert _tree(out) == before  # "a.txt" sorts before the conflict: it was not renamed first
    assert _temps(out) == []


@pytest.mark.parametrize("mode", MODES)
def test_leaving_the_block_without_publishing_leaves_out_as_it_was(out, mode):
    before = _tree(out)
    with pytest.raises(RuntimeError, match="converter failed"):
        with Publication(out, mode=mode) as pub:
            _write(pub.staging, NEW)
            (pub.work / "scratch.bin").write_text("scratch")
            raise RuntimeError("converter failed")
    assert _tree(out) == before
    assert _temps(out) == []
    assert not pub.staging.exists() and not pub.work.exists()


def test_a_publication_inside_another_ones_staging_folder_publishes_with_it(out, stages):
    """qat exports into OUT/ptq inside its own publication: one publish, of both."""
    with Publication(out, mode="swap") as outer:
        _write(outer.staging, {"m.qat-int8.tflite": "qat"})
        with Publication(outer.staging / "ptq") as inner:
            assert inner.mode == "nested" and inner.staging == outer.staging / "ptq"
            _write(inner.staging, {"m.fp32.onnx": "ptq float"})
            inner.publish()
            assert inner.final(inner.staging / "m.fp32.onnx") == out / "ptq" / "m.fp32.onnx"
        assert not (out / "ptq").exists()  # the inner publish published nothing
        assert not inner.work.exists()
        outer.publish()
    assert stages.count("staged") == 1 and stages.count("published") == 1
    assert _tree(out) == {**OLD, **USER, "m.qat-int8.tflite": "qat", "ptq/m.fp32.onnx": "ptq float"}
    assert _temps(out) == []


def test_the_mode_comes_from_the_environment_and_a_bad_value_is_refused(out, monkeypatch):
    monkeypatch.setenv(MODE_ENV, "inplace")
    with Publication(out) as pub:
        assert pub.mode == "inplace" and pub.staging.parent == out
    monkeypatch.setenv(MODE_ENV, "atomic")
    with pytest.raises(OutputError, match=r"^EDGECV_PUBLISH: expected swap or inplace, got 'atomic'$"):
        Publication(out)


def test_a_working_directory_inside_out_publishes_in_place(out, monkeypatch):
    """A swap would leave the shell's working directory in the removed old folder."""
    monkeypatch.delenv(MODE_ENV, raising=False)
    monkeypatch.chdir(out / "mine")
    with Publication(out) as pub:
        assert pub.mode == "inplace"
        _write(pub.staging, NEW)
        pub.publish()
    assert Path.cwd().samefile(out / "mine") and _tree(out)["m.fp32.xml"] == "new xml"


# --- what killed runs leave -------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


HOLD = """
import fcntl, os, sys
fds = [os.open(path, os.O_RDONLY) for path in sys.stdin.readline().split()]
for fd in fds:
    fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock and pids as Linux has them")
@pytest.mark.parametrize("mode", MODES)
def test_the_next_publication_sweeps_what_a_dead_run_left_but_not_a_live_runs(out, mode):
    dead = _dead_pid()
    stale = [out.parent / f".OUT.edgecv-staging-{dead}-abc", out / f".edgecv-work-{dead}-abc",
             out / f".edgecv-staging-{dead}-abc", out / f".edgecv-qat-{dead}-abc"]
    for folder in stale:
        _write(folder, {"half.bin": "left by a killed run"})
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        locked = [out.parent / f".OUT.edgecv-staging-{holder.pid}-xyz", out / f".edgecv-work-{holder.pid}-xyz"]
        unlocked = out / f".edgecv-staging-{holder.pid}-new"  # a live run's, the instant before it takes its lock
        for folder in (*locked, unlocked):
            _write(folder, {"busy.bin": "a live run's"})
        holder.stdin.write(" ".join(map(str, locked)) + "\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "locked"
        assert sorted(stale_staging(out)) == sorted(stale)
        with Publication(out, mode=mode) as pub:
            _write(pub.staging, NEW)
            pub.publish()
        assert [p for p in stale if p.exists()] == []
        assert _tree(out) == {**OLD, **USER, **NEW, f"{locked[1].name}/busy.bin": "a live run's",
                              f"{unlocked.name}/busy.bin": "a live run's"}
        assert locked[0].is_dir()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # Its run has ended: the next publication sweeps its folders too.
    assert sorted(sweep_for(out)) == sorted([*locked, unlocked])


def test_sweep_for_returns_what_it_removed(out):
    dead = _dead_pid()
    left = out.parent / f".OUT.edgecv-staging-{dead}-abc"
    left.mkdir()
    assert sweep_for(out) == [left]
    assert not left.exists()
