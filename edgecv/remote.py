"""Benchmark artifacts on another device over SSH, with the system's ``ssh`` and ``scp``.

The device needs a POSIX shell, Python and edgecv with the runtimes of the artifacts; this machine needs
OpenSSH's client and a key the device accepts (key authentication only: ssh never prompts). Each artifact
is copied with its companion files and manifest to a temporary folder on the device, benchmarked there with
``python -m edgecv bench --json``, and the folder is removed afterwards, also when something fails.

Example:
    >>> with RemoteHost("pi@raspberrypi", python="/home/pi/venv/bin/python") as pi:   # doctest: +SKIP
    ...     r = pi.benchmark("model.int8.tflite", runs=200, threads=4)
    >>> r["device"]["cpu"], f"{r['p50_ms']:.2f} ms"                                    # doctest: +SKIP
    ('Raspberry Pi 4 Model B Rev 1.4', '7.81 ms')
"""

from __future__ import annotations

import json
import logging
import posixpath
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from edgecv.errors import BackendError, ConfigError, EdgeCVError
from edgecv.machine import DEVICE_KEYS, DEVICE_PROBE, WORKDIR_PREFIX, describe_device

if TYPE_CHECKING:
    from edgecv.bench import BenchResult

log = logging.getLogger(__name__)

SSH_OPTIONS = (
    "BatchMode=yes",  # never prompt for a password or a passphrase
    "ConnectTimeout=10",
    "StrictHostKeyChecking=accept-new",
    "ServerAliveInterval=15",  # a device that vanishes mid-benchmark ends ssh in a minute instead of never
    "ServerAliveCountMax=4",
)

def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} is not installed (no {name!r} on PATH): remote benchmarks use OpenSSH's client, "
                          "e.g. apt-get install openssh-client")
    return found


class RemoteHost:
    """A device reached as ``target`` (``user@host``) over SSH, with edgecv installed for ``python`` there.

    ``options`` are extra ``ssh -o`` settings for both ssh and scp, e.g. ``("ProxyJump=gateway",)``; they
    come first, so they override the defaults in :data:`SSH_OPTIONS`. As a context manager it keeps one
    temporary folder on the device for every benchmark, and removes it on exit.

    Example:
        >>> RemoteHost("pi@raspberrypi", port=2222).check()["machine"]     # doctest: +SKIP
        'aarch64'
    """

    def __init__(
        self,
        target: str,
        *,
        python: str = "python3",
        port: int | None = None,
        identity: str | Path | None = None,
        options: Sequence[str] = (),
    ) -> None:
        if not target or target.startswith("-") or any(c.isspace() for c in target):
            raise ConfigError(f"remote: expected user@host, got {target!r}")
        if not python or python.startswith("-"):
            raise ConfigError(f"remote python: expected a path or a command name, got {python!r}")
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"remote port: expected 1..65535, got {port}")
        if identity is not None and not Path(identity).expanduser().is_file():
            raise ConfigError(f"identity file not found: {identity}")
        bad = [o for o in options if not o or o.startswith("-")]
        if bad:
            raise ConfigError(f"ssh options: expected Name=value settings for -o, got {bad}")
        self.target = target
        self.python = python
        self.port = port
        self.identity = Path(identity).expanduser() if identity is not None else None
        self.options = tuple(options)
        self._ssh = _tool("ssh")
        self._scp = _tool("scp")
        self.device: dict | None = None  # set by check()
        self.workdir: str | None = None  # the remote temporary folder while in a ``with`` block
        self._names: set[str] = set()
        self._folders = 0

    def __repr__(self) -> str:
        return f"RemoteHost({self.target!r}, python={self.python!r})"

    # --- ssh and scp ------------------------------------------------------------------------------------

    def _common(self, port_flag: str) -> list[str]:
        args: list[str] = []
        for option in (*self.options, *SSH_OPTIONS):
            args += ["-o", option]
        if self.identity is not None:
            args += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if self.port is not None:
            args += [port_flag, str(self.port)]
        return args

    def _failure(self, stderr: str) -> ConfigError:
        line = _last_line(stderr) or "no message"
        hint = ""
        if "Permission denied" in line:
            hint = "; only key authentication is used: pass --identity KEY or add the key to ssh-agent"
        return ConfigError(f"{self.target}: ssh failed ({line}){hint}")

    def run(self, argv: Sequence[str | int]) -> subprocess.CompletedProcess:
        """Run ``argv`` on the device, each argument quoted for its shell; raise when ssh itself fails.

        Example:
            >>> RemoteHost("pi@raspberrypi").run(["uname", "-m"]).stdout.strip()      # doctest: +SKIP
            'aarch64'
        """
        command = " ".join(shlex.quote(str(a)) for a in argv)
        cmd = [self._ssh, *self._common("-p"), "--", self.target, command]
        shown = ("<device probe>" if a is DEVICE_PROBE else shlex.quote(str(a)) for a in argv)
        log.debug("ssh %s: %s", self.target, " ".join(shown))
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode == 255:  # ssh's own failures; a remote command's exit code passes through
            raise self._failure(proc.stderr)
        return proc

    def _copy(self, files: Sequence[Path], folder: str) -> None:
        host = self.target.rpartition("@")[2]
        # scp reads user@host:path, so an IPv6 address needs its brackets.
        target = self.target if ":" not in host or host.startswith("[") else f"{self.target[: -len(host)]}[{host}]"
        cmd = [self._scp, "-q", *self._common("-P"), "--", *map(str, files), f"{target}:{folder}/"]
        log.debug("scp: %s", shlex.join(cmd))
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if proc.returncode != 0:
            line = _last_line(proc.stderr) or f"exit code {proc.returncode}"
            raise ConfigError(f"{self.target}: copying {files[0].name} failed ({line})")

    # --- device and working folder ------------------------------------------------------------------------

    def _probe(self, *, mkdtemp: bool) -> dict:
        proc = self.run([self.python, "-c", DEVICE_PROBE, *(["mkdtemp"] if mkdtemp else [])])
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]  # a login banner may come first
        if proc.returncode == 127:
            raise ConfigError(f"{self.target}: {self.python} not found ({_last_line(proc.stderr)}); pass --python")
        if proc.returncode != 0 or not lines:
            why = _last_line(proc.stderr) or f"exit code {proc.returncode}, no output"
            raise ConfigError(f"{self.target}: edgecv is not installed for {self.python} ({why}); pass --python")
        try:
            info = json.loads(lines[-1])
        except ValueError:
            raise ConfigError(f"{self.target}: the device check printed no JSON ({lines[-1][:80]!r})") from None
        if info.get("error"):
            what = "is not installed" if info.get("missing") else "does not import"
            raise ConfigError(f"{self.target}: edgecv {what} for {self.python} ({info['error']}); pass --python")
        self.device = {**{k: info.get(k) for k in DEVICE_KEYS}, "remote": self.target}
        return info

    def check(self) -> dict:
        """The device record (hostname, machine, cpu, cores, os, python, edgecv, remote); raise if edgecv
        does not import there."""
        self._probe(mkdtemp=False)
        return dict(self.device or {})

    def __enter__(self) -> RemoteHost:
        info = self._probe(mkdtemp=True)
        workdir = str(info.get("workdir") or "")
        # Only ever remove a folder that is plainly the one made here.
        if not posixpath.isabs(workdir) or not posixpath.basename(workdir).startswith(WORKDIR_PREFIX):
            raise ConfigError(f"{self.target}: could not make a temporary folder (got {workdir!r})")
        self.workdir, self._names, self._folders = workdir, set(), 0
        log.info("%s; working in %s", describe_device(self.device or {}), workdir)
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Remove the remote temporary folder (a failure to do so is logged, never raised)."""
        workdir, self.workdir = self.workdir, None
        if workdir is None:
            return
        try:
            proc = self.run(["rm", "-rf", "--", workdir])
            if proc.returncode != 0:
                log.warning("%s: could not remove %s: %s", self.target, workdir, _last_line(proc.stderr))
        except EdgeCVError as exc:
            log.warning("could not remove %s on %s: %s", workdir, self.target, exc)

    def _folder_for(self, files: Sequence[Path]) -> str:
        """The working folder, or a fresh subfolder when a file of that name was copied before."""
        assert self.workdir is not None
        names = {f.name for f in files}
        if not names & self._names:
            self._names |= names
            return self.workdir
        self._folders += 1
        folder = posixpath.join(self.workdir, str(self._folders))
        proc = self.run(["mkdir", "--", folder])
        if proc.returncode != 0:
            raise ConfigError(f"{self.target}: could not make {folder} ({_last_line(proc.stderr)})")
        return folder

    # --- benchmark --------------------------------------------------------------------------------------

    def benchmark(
        self,
        artifact: str | Path,
        *,
        runs: int = 100,
        warmup: int = 10,
        threads: int | None = None,
        batch: int = 1,
        backend: str | None = None,
        verify: bool = True,
    ) -> dict:
        """:func:`edgecv.bench.benchmark` on the device, as ``BenchResult.to_dict()``: it names the local
        ``artifact`` and records the device. Outside a ``with`` block, a temporary folder is made and
        removed for this one call. The device's edgecv checks the copies against the manifest (copied too)
        unless ``verify`` is False."""
        if self.workdir is None:
            with self:
                return self.benchmark(artifact, runs=runs, warmup=warmup, threads=threads, batch=batch, backend=backend,
                                      verify=verify)
        from edgecv.bench import check_settings
        from edgecv.formats import check_model_file
        from edgecv.manifest import manifest_path

        check_settings(runs=runs, warmup=warmup, batch=batch)
        path = Path(artifact)
        files = check_model_file(path).files(path)
        if manifest_path(path).is_file():
            files.append(manifest_path(path))
        folder = self._folder_for(files)
        self._copy(files, folder)
        argv = [self.python, "-m", "edgecv", "bench", posixpath.join(folder, path.name), "--json",
                "--runs", runs, "--warmup", warmup, "--batch", batch]
        if threads is not None:
            argv += ["--threads", threads]
        if backend:
            argv += ["--backend", backend]
        if not verify:
            argv.append("--no-verify")
        proc = self.run(argv)
        if proc.returncode != 0:
            why = _last_line(proc.stderr).removeprefix("edgecv: error: ") or f"exit code {proc.returncode}"
            raise BackendError(f"{self.target}: benchmark of {path.name} failed: {why}")
        return self._result(proc.stdout, path).to_dict()

    def _result(self, stdout: str, path: Path) -> BenchResult:
        from dataclasses import fields

        from edgecv.bench import BenchResult

        version = (self.device or {}).get("edgecv")
        try:
            data = json.loads(stdout[stdout.index("[") :])[0]
        except (ValueError, IndexError, KeyError) as exc:
            raise BackendError(f"{self.target}: edgecv {version} there printed no benchmark JSON ({exc})") from None
        known = {f.name for f in fields(BenchResult)} - {"device"}
        missing = sorted(known - set(data))
        if missing:
            from edgecv import __version__

            raise BackendError(f"{self.target}: edgecv {version} there reports no {', '.join(missing)}; "
                               f"install edgecv {__version__} there, as here")
        values = {k: data[k] for k in known}
        return BenchResult(**{**values, "artifact": str(path)}, device=dict(self.device or {}))
