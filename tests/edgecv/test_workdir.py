"""edgecv.workdir: work folders held by a lock while their run lives, removed on every exit path Python sees,
swept when their run is gone (and only then); SIGTERM unwinds like Ctrl-C inside sigterm_unwinds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecv.workdir import WorkDir, is_stale, sigterm_unwinds, sweep

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock, pids and /proc as Linux has them")

# Locks the folders named on its first stdin line, says so, and holds them until stdin closes.
HOLD = """
import fcntl, os, sys
fds = [os.open(path, os.O_RDONLY) for path in sys.stdin.readline().split()]
for fd in fds:
    fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_work_folder_is_named_for_its_run_locked_while_open_and_removed_after(tmp_path):
    with WorkDir.create(tmp_path, ".edgecv-work-") as work:
        assert work.path.parent == tmp_path and work.path.name.startswith(f".edgecv-work-{os.getpid()}-")
        (work.path / "sub").mkdir()
        (work.path / "sub" / "scratch.bin").write_bytes(b"x")
        assert not is_stale(work.path)
    assert list(tmp_path.iterdir()) == []


def test_an_exception_removes_the_folder(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with WorkDir.create(tmp_path, ".edgecv-work-"):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("owner, locked, age_s, stale", [
    ("dead", False, 0, True),  # a killed run's: its lock went with it
    ("live", True, 0, False),  # a live run's
    ("live", True, 3600, False),  # a long run's
    ("live", False, 0, False),  # a live run's, the instant between its creation and its lock
    ("live", False, 3600, True),  # a dead run's whose pid was reused (in a container every run may be pid 1)
    ("none", False, 0, True),  # no pid in the name: the free lock decides
    ("none", True, 0, False),
])
def test_is_stale(tmp_path, owner, locked, age_s, stale):
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = {"dead": _dead_pid(), "live": holder.pid, "none": None}[owner]
        folder = tmp_path / (f".edgecv-work-{pid}-abc" if pid is not None else ".edgecv-work-abc")
        folder.mkdir()
        if age_s:
            os.utime(folder, (time.time() - age_s, time.time() - age_s))
        holder.stdin.write((str(folder) if locked else "") + "\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "locked"
        assert is_stale(folder) is stale
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert is_stale(folder)  # once its owner has ended, every folder is stale


def test_an_ended_but_unreaped_owner_counts_as_gone(tmp_path):
    """A killed run whose parent has not reaped it yet (a zombie) owns nothing."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        folder = tmp_path / f".edgecv-work-{proc.pid}-abc"
        folder.mkdir()
        deadline = time.monotonic() + 30
        while Path(f"/proc/{proc.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert is_stale(folder)
    finally:
        proc.wait()


def test_sweep_removes_only_stale_folders_of_the_given_prefixes(tmp_path):
    dead = _dead_pid()
    stale = [tmp_path / f".edgecv-work-{dead}-a", tmp_path / f"edgecv-child-{dead}-b"]
    kept = [tmp_path / f".edgecv-other-{dead}-c", tmp_path / "notes"]  # another prefix, the user's folder
    for folder in stale + kept:
        (folder / "sub").mkdir(parents=True)
    (tmp_path / f".edgecv-work-{dead}-file").write_text("a file, not a work folder")
    with WorkDir.create(tmp_path, ".edgecv-work-") as live:
        assert sorted(sweep(tmp_path, [".edgecv-work-", "edgecv-child-"])) == sorted(stale)
        assert live.path.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in kept), f".edgecv-work-{dead}-file"])
    assert sweep(tmp_path / "absent", [".edgecv-work-"]) == []


# A run that is sent SIGTERM inside sigterm_unwinds: its finally blocks run, then it ends by SIGTERM.
TERM = """
import os, signal, sys, time
from edgecv.workdir import WorkDir, sigterm_unwinds
with sigterm_unwinds():
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    try:
        with WorkDir.create(sys.argv[1], ".edgecv-work-") as work:
            print(work.path, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
    finally:
        print("unwound", flush=True)
print("not reached", flush=True)
"""


def test_sigterm_unwinds_then_ends_the_process_by_sigterm(tmp_path):
    proc = subprocess.run([sys.executable, "-c", TERM, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1:] == ["unwound"] and Path(lines[0]).parent == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_sigterm_unwinds_restores_the_default_and_leaves_another_handler_alone():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with sigterm_unwinds():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def mine(signum, frame):
        pass

    signal.signal(signal.SIGTERM, mine)
    try:
        with sigterm_unwinds():
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
