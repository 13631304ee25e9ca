"""Named stage boundaries of edgecv's long operations (export and its publish step, child processes), and a
hook that stops the process at one of them, so tests can kill an export at every boundary without timing.

:func:`stage` does nothing unless the environment asks for it:

- ``EDGECV_KILL_AT=<stage name>``: the process that reaches that stage sends itself ``EDGECV_KILL_SIGNAL``
  (default ``SIGKILL``; ``SIGTERM`` and ``SIGINT`` test the clean-up paths) there, the first time it does;
  ``<stage name>#<n>`` stops it the n-th time instead (a stage a run passes more than once, such as
  ``child-started:edgecv.bench`` once per artifact);
- ``EDGECV_STAGE_TRACE=<file>``: every stage reached is appended to that file, one name a line.

:data:`STAGES` lists the boundaries; a name is a pattern's fields filled in (``built:onnx.fp32``).

Example:
    >>> stage("staged")            # a no-op unless EDGECV_KILL_AT or EDGECV_STAGE_TRACE is set
    >>> pattern_of("built:openvino.fp32")
    'built:{format}.{precision}'
"""

from __future__ import annotations

import os
import re
import signal
from collections import Counter

KILL_AT = "EDGECV_KILL_AT"
KILL_SIGNAL = "EDGECV_KILL_SIGNAL"
TRACE = "EDGECV_STAGE_TRACE"

# Pattern -> what is true once the stage is passed. Order: the order a run passes them.
STAGES: dict[str, str] = {
    "child-started:{target}": "edgecv.child started a child process (and its supervisor) and waits for it",
    "built:{format}.{precision}": "export: one artifact is built, checked and in the staging folder with its manifest",
    "staged": "the whole new set (artifacts, manifests, report) is in the staging folder; OUT is untouched",
    "linked": "swap: the entries of OUT the new set does not replace are hard-linked into the staging folder",
    "swapped": "swap: the staging folder and OUT exchanged by one rename; OUT holds the new set",
    "rescued": "swap: entries that appeared in OUT during the publish moved into the new OUT",
    "moved:{file}": "in place: one file of the set renamed into OUT (companions, artifact, manifest; reports last)",
    "published": "the old folder (swap) or the staging folder (in place) removed; the publish is complete",
}

# The stages of publishing a set, by publish mode (see edgecv.converters.publish).
PUBLISH_STAGES = {"swap": ("staged", "linked", "swapped", "rescued", "published"),
                  "inplace": ("staged", "moved:{file}", "published")}

_passed: Counter[str] = Counter()  # how many times this process passed each stage


def stage(name: str) -> None:
    """Mark the boundary ``name``: trace it, and stop the process here if ``EDGECV_KILL_AT`` names it (or
    names ``name#n`` and this is the n-th time)."""
    _passed[name] += 1
    trace = os.environ.get(TRACE)
    if trace:
        with open(trace, "a", encoding="utf-8") as f:
            f.write(name + "\n")
    wanted = os.environ.get(KILL_AT)
    if wanted not in (name, f"{name}#{_passed[name]}") or (wanted == name and _passed[name] > 1):
        return
    sig = getattr(signal, "SIG" + os.environ.get(KILL_SIGNAL, "KILL").upper().removeprefix("SIG"), signal.SIGKILL)
    os.environ.pop(KILL_AT, None)  # once: a handler that unwinds must not stop again at a later stage
    os.kill(os.getpid(), sig)


def pattern_of(name: str) -> str | None:
    """The pattern of :data:`STAGES` that ``name`` fills in, or None."""
    for pattern in STAGES:
        if re.fullmatch(re.sub(r"\\\{\w+\\\}", ".+", re.escape(pattern)), name):
            return pattern
    return None


__all__ = ["STAGES", "PUBLISH_STAGES", "KILL_AT", "KILL_SIGNAL", "TRACE", "stage", "pattern_of"]
