"""This machine and this process: the device record a benchmark carries, and resident memory.

The device record comes from one script, :data:`DEVICE_PROBE`, run here in-process and on a remote device
by :mod:`edgecv.remote` with the device's own Python.

Example:
    >>> describe_device(local_device())                         # doctest: +SKIP
    'local: build-01, x86_64, AMD EPYC 7B13, 2 cores, Python 3.11.9, edgecv 0.1.0'
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

WORKDIR_PREFIX = "edgecv-bench-"  # the remote working folder DEVICE_PROBE makes with "mkdtemp"

# One source for the device record, here and there: run with the device's own Python before edgecv is known
# to import there, so standard library only and no syntax newer than Python 3.6. With "mkdtemp" as its
# argument it also makes the working folder, when edgecv imports, to save an ssh round trip.
DEVICE_PROBE = r'''
import json, os, platform, socket, sys, tempfile

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            pairs = [line.split(":", 1) for line in f if ":" in line]
    except OSError:
        return platform.processor() or None
    info = {}
    for key, value in pairs:
        info.setdefault(key.strip().lower(), value.strip())
    # x86 names the CPU; ARM boards name the board ("Model") or the SoC ("Hardware") instead.
    for key in ("model name", "model", "hardware", "cpu model", "processor"):
        if info.get(key) and not info[key].isdigit():
            return info[key]
    return platform.processor() or None

def probe(argv):
    info = {"hostname": socket.gethostname(), "machine": platform.machine(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "os": platform.system() + " " + platform.release(),
            "python": platform.python_version(), "edgecv": None}
    try:
        import importlib
        edgecv = importlib.import_module("edgecv")
        importlib.import_module("edgecv.bench")
        info["edgecv"] = edgecv.__version__
    except Exception as exc:
        info["error"] = "%s: %s" % (type(exc).__name__, exc)
        info["missing"] = getattr(exc, "name", None) == "edgecv"
        return info
    if "mkdtemp" in argv:
        info["workdir"] = tempfile.mkdtemp(prefix="''' + WORKDIR_PREFIX + r'''")
    return info

if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1:])))
'''
DEVICE_KEYS = ("hostname", "machine", "cpu", "cores", "os", "python", "edgecv", "remote")


@functools.lru_cache(maxsize=1)
def _local_probe() -> dict:
    namespace: dict = {"__name__": "edgecv.machine.probe"}
    exec(compile(DEVICE_PROBE, "<edgecv device probe>", "exec"), namespace)
    return namespace["probe"]([])


def local_device() -> dict:
    """This machine's device record, as :meth:`edgecv.remote.RemoteHost.check` records a remote one (``remote`` is None).

    Example:
        >>> sorted(local_device())                                   # doctest: +SKIP
        ['cores', 'cpu', 'edgecv', 'hostname', 'machine', 'os', 'python', 'remote']
    """
    info = _local_probe()
    return {**{k: info.get(k) for k in DEVICE_KEYS}, "remote": None}


def describe_device(device: dict) -> str:
    """A device record on one line, for under a table.

    Example:
        >>> describe_device({"hostname": "pi4", "machine": "aarch64", "cores": 4, "python": "3.11.2", "remote": "pi@pi4"})
        'pi@pi4: pi4, aarch64, 4 cores, Python 3.11.2'
    """
    parts = [device.get("hostname"), device.get("machine"), device.get("cpu"),
             f"{device.get('cores')} cores" if device.get("cores") else None,
             f"Python {device['python']}" if device.get("python") else None,
             f"edgecv {device['edgecv']}" if device.get("edgecv") else None]
    where = device.get("remote") or "local"
    return f"{where}: " + ", ".join(str(p) for p in parts if p)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: ``taskset``, a container's cpuset), else all.

    Example:
        >>> usable_cores() >= 1
        True
    """
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def batch_scheduling(pid: int = 0) -> bool:
    """Run the calling thread (or the process ``pid``) under Linux's ``SCHED_BATCH`` policy; whether it did.

    A thread woken under the default policy preempts the running one. When the running one holds Python's
    interpreter lock, every thread of the process then waits for it to be scheduled again: in ``edgecv serve``
    at 16 cameras, a fifth of the time the lock was held went into waking the streams whose frames the batcher
    had run. ``SCHED_BATCH`` keeps a woken thread from preempting, at the cost of its wake-up latency (a few
    ms at most). edgecv's own worker threads and child processes call this; a thread under another policy than
    the default (real-time, idle: someone chose it) is left as it is, as are systems without the policy.

    Example:
        >>> batch_scheduling() in (True, False)                     # doctest: +SKIP
        True
    """
    import os

    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return False
    try:
        if os.sched_getscheduler(pid) != os.SCHED_OTHER:
            return False
        os.sched_setscheduler(pid, policy, os.sched_param(0))
    except OSError:  # the process has ended already, or a sandbox refuses the call: scheduling stays as it was
        return False
    return True


def rss_mb() -> tuple[float | None, float | None]:
    """(current, peak) resident memory of this process in MB, from /proc where there is one (else the peak
    from ``getrusage``, or None).

    Example:
        >>> current, peak = rss_mb()                                 # doctest: +SKIP
        >>> round(peak)                                              # doctest: +SKIP
        212
    """
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        try:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return None, peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
        except ImportError:
            return None, None
