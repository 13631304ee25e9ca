"""A throwaway OpenSSH server on 127.0.0.1, for the remote-benchmark tests and benchmarks/remote_bench.py.

It runs Debian's ``/usr/sbin/sshd`` as the current user, with a fresh host key and client key, its own config
and known-hosts file, all in one folder; nothing outside that folder is touched except ``/run/sshd`` (made
when missing and running as root, because sshd's privilege separation needs it).

Example:
    >>> with local_sshd(Path("/tmp/x")) as server:          # doctest: +SKIP
    ...     RemoteHost(server.target, **server.host_kwargs).check()["remote"]
    'root@127.0.0.1'
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


def find_sshd() -> str | None:
    """The sshd binary (absolute: sshd re-executes itself), also when /usr/sbin is not on PATH."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    return shutil.which("sshd", path=search)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SshServer:
    port: int
    target: str  # user@127.0.0.1
    identity: Path  # the client's private key
    known_hosts: Path
    process: subprocess.Popen
    log: Path
    options: tuple[str, ...] = field(default=())

    @property
    def host_kwargs(self) -> dict:
        """Keyword arguments for :class:`edgecv.remote.RemoteHost` (besides ``python``)."""
        return {"port": self.port, "identity": self.identity, "options": self.options}


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecv-test", "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def local_sshd(folder: Path, *, timeout: float = 15.0) -> Iterator[SshServer]:
    """Start sshd on a free port of 127.0.0.1 with everything in ``folder``; stop it on exit."""
    sshd = find_sshd()
    if sshd is None:
        raise RuntimeError("sshd not found: apt-get install openssh-server")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    _keygen(folder / "host_key")
    _keygen(folder / "client_key")
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "StrictModes no\nUsePAM no\nPrintMotd no\nUseDNS no\n"
        # scp speaks SFTP since OpenSSH 9.0.
        "Subsystem sftp internal-sftp\n"
    )
    log = folder / "sshd.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text().strip()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not listen on port {port} within {timeout} s: {log.read_text().strip()}")
            time.sleep(0.05)
        known_hosts = folder / "known_hosts"
        yield SshServer(port=port, target=f"{getpass.getuser()}@127.0.0.1", identity=folder / "client_key",
                        known_hosts=known_hosts, process=proc, log=log,
                        options=(f"UserKnownHostsFile={known_hosts}",))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
