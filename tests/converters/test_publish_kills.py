"""``edgecv export`` killed at every stage boundary it passes, in both publish modes (issue 16).

The real CLI runs in a subprocess (an ONNX source, ``--to onnx,openvino``: the IR has a ``.bin`` companion)
into a copy of an old set of the same artifact names beside the user's own files, and stops itself at one
named stage (``EDGECV_KILL_AT``, :mod:`edgecv.stages`: no timing). The harness is
``benchmarks/export_kills.py``, whose ``main`` prints these cases as a table.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from edgecv import errors
from edgecv.stages import PUBLISH_STAGES, pattern_of

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import export_kills as ek  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kill harness reads /proc")

MODES = ("swap", "inplace")


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> ek.Bench:
    return ek.prepare(tmp_path_factory.mktemp("kills"))


@pytest.fixture(scope="module")
def traced(bench):
    """mode -> (the stages a new export passes, the new set it leaves), one traced run per mode."""
    cache = {}

    def get(mode: str):
        if mode not in cache:
            cache[mode] = ek.trace_stages(bench, mode)
        return cache[mode]

    return get


@pytest.fixture(scope="module")
def kills(bench, traced):
    """mode -> a SIGKILL case at every boundary of the traced run (each followed by the next export)."""
    cache = {}

    def get(mode: str) -> list[ek.Case]:
        if mode not in cache:
            stages, new = traced(mode)
            cache[mode] = [ek.run_case(bench, new, mode=mode, stage=point) for point in ek.kill_points(stages)]
        return cache[mode]

    return get


def _report(cases: list[ek.Case], problems: list[str]) -> str:
    return "\n".join(problems) + "\n\n" + ek.table(cases)


def _expected(mode: str, stage: str) -> set[str]:
    """What OUT may hold after a kill at ``stage``: before the exchange (swap) or the first rename (in place)
    the old set; after it the new one; between the renames in place a mix (see test_load_refuses_...)."""
    name = stage.split("#")[0]
    if mode == "swap":
        return {"new"} if name in ("swapped", "rescued", "published") else {"old"}
    if name == "published":
        return {"new"}
    return {"mixed", "new"} if name.startswith("moved:") else {"old"}


# --- the boundaries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_boundary_of_the_run_is_killed_at(mode, traced, kills):
    stages, _ = traced(mode)
    patterns = {pattern_of(s) for s in stages}
    assert None not in patterns, f"stages outside edgecv.stages.STAGES: {stages}"
    wanted = {*PUBLISH_STAGES[mode], "built:{format}.{precision}", "child-started:{target}"}
    assert wanted <= patterns, f"{mode}: no {sorted(wanted - patterns)} in {stages}"
    assert sorted(s for s in stages if s.startswith("built:")) == ["built:onnx.fp32", "built:openvino.fp32"]
    cases = kills(mode)
    assert [c.stage for c in cases] == ek.kill_points(stages)
    problems = [f"{c.stage}: exit {ek.exit_text(c.returncode)}, last stage {c.last_stage!r}" for c in cases
                if c.returncode != -signal.SIGKILL or c.last_stage != c.stage.split("#")[0]]
    assert not problems, _report(cases, problems)


# --- what OUT holds afterwards ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_kill_leaves_the_old_set_or_the_new_set(mode, kills):
    cases = kills(mode)
    problems = []
    for c in cases:
        if c.held not in _expected(mode, c.stage):
            problems.append(f"{c.stage}: OUT holds {c.held}, expected {' or '.join(sorted(_expected(mode, c.stage)))}")
        if (c.report_held == "new") != (c.held == "new"):
            problems.append(f"{c.stage}: report.json is the {c.report_held} one beside a {c.held} set")
        if not c.user_files:
            problems.append(f"{c.stage}: the user's files are not intact")
    assert not problems, _report(cases, problems)


@pytest.mark.parametrize("mode", MODES)
def test_load_refuses_every_artifact_a_kill_left_half_placed(mode, kills):
    """An artifact whose files do not match its manifest is refused by edgecv.load, with an IntegrityError (in
    place, between the renames); a swap never leaves one."""
    cases = kills(mode)
    problems = [f"{c.stage}: edgecv.load ran {a}, whose files do not match its manifest" for c in cases for a in c.accepted_mix]
    problems += [f"{c.stage}: {a} {what}" for c in cases for a, what in c.broken.items()
                 if what not in ("ACCEPTED", f"refused: {errors.IntegrityError.__name__}")]
    if mode == "swap":
        problems += [f"{c.stage}: artifacts not whole: {c.broken}" for c in cases if c.broken]
    else:
        assert any(c.broken for c in cases), "no kill left a half-placed artifact: the check above tested nothing"
    assert not problems, _report(cases, problems)


@pytest.mark.parametrize("mode", MODES)
def test_no_process_of_a_killed_export_survives_it(mode, kills):
    cases = kills(mode)
    problems = [f"{c.stage}: pids {c.survived} still alive 10 s after the kill" for c in cases if c.survived]
    assert not problems, _report(cases, problems)
    # The runs had workers to kill (the CLI, and the benchmark's supervisor and worker per artifact).
    assert max(c.pids_seen for c in cases) >= 3, _report(cases, ["no worker process was ever seen"])


@pytest.mark.parametrize("mode", MODES)
def test_the_next_export_sweeps_what_a_kill_left_and_succeeds(mode, kills):
    cases = kills(mode)
    assert any(c.leftovers for c in cases), "no kill left anything behind: the sweep was not tested"
    problems = [f"{c.stage}: next run exit {ek.exit_text(c.next_returncode)}, holds {c.next_held}, "
                f"left {c.next_leftovers}, user files intact: {c.next_user_files}" for c in cases
                if c.next_returncode != 0 or c.next_held != "new" or c.next_leftovers or not c.next_user_files]
    assert not problems, _report(cases, problems)


# --- SIGTERM and Ctrl-C: clean-up runs ----------------------------------------------------------------


@pytest.mark.parametrize("mode, stage, sig, exit_code, last_stage, holds", [
    ("swap", "built:onnx.fp32", "TERM", -signal.SIGTERM, "built:onnx.fp32", "old"),
    ("swap", "built:onnx.fp32", "INT", 130, "built:onnx.fp32", "old"),
    # the benchmark's worker and its supervisor are killed with it
    ("inplace", "child-started:edgecv.bench#2", "TERM", -signal.SIGTERM, "child-started:edgecv.bench", "old"),
    # after the exchange the signal waits for the rescue pass; before the first rename, for the last one
    ("swap", "swapped", "INT", 130, "rescued", "new"),
    ("inplace", "moved:tiny.fp32.bin", "TERM", -signal.SIGTERM, "moved:report.json", "new"),
])
def test_sigterm_and_ctrl_c_leave_a_whole_set_and_nothing_else(bench, traced, mode, stage, sig, exit_code, last_stage, holds):
    _, new = traced(mode)
    c = ek.run_case(bench, new, mode=mode, stage=stage, signal_name=sig, next_run=False)
    assert (c.returncode, c.last_stage) == (exit_code, last_stage), ek.table([c])
    assert (c.held, c.broken, c.user_files) == (holds, {}, True), ek.table([c])
    assert c.leftovers == [], f"the clean-up left {c.leftovers}"
    assert c.survived == []


# --- the harness sees what it must -------------------------------------------------------------------


def test_the_harness_tells_a_mix_from_a_set(bench, traced, tmp_path):
    """A new .bin beside the old .xml and manifest is a mix, and its artifact is not whole; the old set as
    it is, and the new one, are whole sets."""
    _, new = traced("swap")
    out = tmp_path / "OUT"
    shutil.copytree(bench.template, out)
    assert (ek.held(out, bench.old, new), ek.broken_artifacts(out)) == ("old", {})
    newer = tmp_path / "new"
    newer.mkdir()
    assert ek.run_export(bench.new_model, newer, mode="swap", home=tmp_path).returncode == 0
    shutil.copy(newer / "tiny.fp32.bin", out / "tiny.fp32.bin")
    assert ek.held(out, bench.old, new) == "mixed"
    assert list(ek.broken_artifacts(out)) == ["tiny.fp32.xml"]
    assert ek.held(newer, bench.old, new) == "new"
    (out / "tiny.fp32.bin").unlink()
    assert ek.held(out, bench.old, new) == "mixed"


def test_the_harness_finds_a_live_process_of_the_run():
    token = uuid.uuid4().hex
    proc = subprocess.Popen(["sleep", "30"], env={**os.environ, ek.MARKER: token})
    try:
        # Popen returns while the kernel may still be setting up the new environment of the exec: poll.
        deadline = time.monotonic() + 10
        while not ek.marked_pids(token) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ek.marked_pids(token) == {proc.pid}
        assert ek.survivors(token, within=0.2) == [proc.pid]
    finally:
        proc.kill()
        proc.wait()
    assert ek.survivors(token, within=5) == []
