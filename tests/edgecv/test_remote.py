"""Benchmarks on another device over SSH, through a real OpenSSH server (Debian's sshd) on 127.0.0.1.

The server runs as the current user with throwaway keys (tests/edgecv/sshd_helper.py); the "device" is this
machine, so the tests can look at the remote temporary folder directly. ``.ci/run`` installs openssh-server
and sets EDGECV_CI=1, so that in CI a missing sshd fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecv.bench import BenchResult, benchmark
from edgecv.errors import BackendError, ConfigError, ModelFileError
from edgecv.manifest import Manifest, manifest_path
from edgecv.machine import DEVICE_KEYS, local_device
from edgecv.remote import RemoteHost
from tests.edgecv.sshd_helper import find_sshd, free_port, local_sshd

SSHD = find_sshd()
CLIENT = all(shutil.which(t) for t in ("ssh", "scp", "ssh-keygen"))
if (SSHD is None or not CLIENT) and os.environ.get("EDGECV_CI"):
    pytest.fail("sshd or ssh is missing: .ci/run installs Debian's openssh-server and openssh-client", pytrace=False)
needs_sshd = pytest.mark.skipif(SSHD is None or not CLIENT,
                                reason="needs sshd and ssh (apt-get install openssh-server openssh-client)")

pytest.importorskip("onnxruntime")


def edgecv(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgecv", *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if SSHD is None or not CLIENT:
        pytest.skip("needs sshd and ssh")
    with local_sshd(tmp_path_factory.mktemp("sshd")) as s:
        yield s


@pytest.fixture
def host(server):
    return RemoteHost(server.target, python=sys.executable, **server.host_kwargs)


@pytest.fixture
def artifact(tiny_onnx, tmp_path):
    """The tiny ONNX model with a manifest beside it: only a copied manifest makes the remote precision fp32."""
    path = tmp_path / "model dir" / "tiny.onnx"  # a space, to check the quoting on both sides
    path.parent.mkdir()
    shutil.copy(tiny_onnx, path)
    Manifest(format="onnx", precision="fp32").write(manifest_path(path))
    return path


def _cli_remote(server, *, python: str = sys.executable, port: int | None = None) -> list:
    return ["--remote", server.target, "--python", python, "--port", port or server.port, "--identity", server.identity,
            "--ssh-option", server.options[0]]


def _workdirs(stderr: str) -> list[Path]:
    return [Path(p) for p in re.findall(r"working in (/\S+)", stderr)]


# --- the local device record, no server needed --------------------------------------------------------------


def test_local_runs_record_this_device(tiny_onnx):
    r = benchmark(tiny_onnx, runs=3, warmup=0, isolate=False)
    import platform
    import socket

    import edgecv

    assert r.device == local_device() and tuple(r.device) == DEVICE_KEYS
    assert r.device["remote"] is None and r.device["hostname"] == socket.gethostname()
    assert r.device["machine"] == platform.machine() and r.device["cores"] == os.cpu_count()
    assert r.device["python"] == platform.python_version() and r.device["edgecv"] == edgecv.__version__
    if Path("/proc/cpuinfo").is_file() and "model name" in Path("/proc/cpuinfo").read_text():
        assert r.device["cpu"] and r.device["cpu"] in Path("/proc/cpuinfo").read_text()
    assert r.to_dict()["device"] == r.device


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": "-oProxyCommand=x"}, "remote: expected user@host"),
        ({"target": "pi@host name"}, "remote: expected user@host"),
        ({"port": 70000}, "remote port: expected 1..65535, got 70000"),
        ({"identity": "/nonexistent/key"}, "identity file not found: /nonexistent/key"),
        ({"options": ["-F/tmp/x"]}, "ssh options: expected Name=value"),
        ({"python": "-c"}, "remote python: expected a path"),
    ],
)
def test_bad_settings_fail_before_ssh_runs(kwargs, message):
    kwargs = {"target": "pi@raspberrypi", **kwargs}
    with pytest.raises(ConfigError, match=re.escape(message)):
        RemoteHost(kwargs.pop("target"), **kwargs)


def test_missing_ssh_binary(tmp_path, monkeypatch, artifact):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^ssh is not installed \(no 'ssh' on PATH\).*openssh-client"):
        RemoteHost("pi@raspberrypi")
    (tmp_path / "ssh").symlink_to(shutil.which("true", path="/usr/bin:/bin"))
    with pytest.raises(ConfigError, match=r"^scp is not installed"):
        RemoteHost("pi@raspberrypi")
    proc = edgecv("bench", artifact, "--remote", "pi@raspberrypi", env={**os.environ, "PATH": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.startswith("edgecv: error: scp is not installed")


def test_remote_options_need_remote(artifact):
    proc = edgecv("bench", artifact, "--python", "/usr/bin/python3")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "edgecv: error: --python, --port, --identity and --ssh-option need --remote USER@HOST"


def test_bad_file_fails_before_connecting(tmp_path):
    # Port 1 on 127.0.0.1 is closed: reaching ssh would give "Connection refused" instead.
    proc = edgecv("bench", tmp_path / "missing.onnx", "--remote", "nobody@127.0.0.1", "--port", 1)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"edgecv: error: model file not found: {tmp_path / 'missing.onnx'}"


# --- through the real server ----------------------------------------------------------------------------------


@needs_sshd
def test_cli_remote_json_matches_a_local_run(server, artifact):
    settings = ["--runs", "5", "--warmup", "1", "--threads", "1", "--json"]
    local = edgecv("bench", artifact, *settings)
    remote = edgecv("-v", "bench", artifact, *settings, *_cli_remote(server))
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    [lr], [rr] = json.loads(local.stdout), json.loads(remote.stdout)
    assert set(rr) == set(lr) and set(rr["device"]) == set(lr["device"]) == set(DEVICE_KEYS)
    for key in ("artifact", "format", "backend", "precision", "threads", "batch", "runs", "warmup", "size_bytes"):
        assert rr[key] == lr[key], key
    assert rr["precision"] == "fp32"  # the manifest went along
    assert 0 < rr["min_ms"] <= rr["p50_ms"] <= rr["p99_ms"] and rr["peak_rss_mb"] > 0
    assert lr["device"]["remote"] is None and rr["device"]["remote"] == server.target
    assert rr["device"] == {**lr["device"], "remote": server.target}  # the same machine, seen from both sides
    [workdir] = _workdirs(remote.stderr)
    assert workdir.name.startswith("edgecv-bench-") and not workdir.exists()


@needs_sshd
def test_cli_remote_table_names_the_device(server, artifact, tmp_path):
    shutil.copy(artifact, tmp_path / "b.onnx")
    proc = edgecv("-v", "bench", artifact, tmp_path / "b.onnx", "--runs", "3", "--warmup", "0", *_cli_remote(server))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["artifact", "backend", "precision"]
    assert [ln.split()[0] for ln in lines[2:4]] == ["tiny.onnx", "b.onnx"]
    assert lines[2].split()[2] == "fp32" and lines[3].split()[2] == "fp32"  # b.onnx has no manifest: read from its graph
    assert lines[-1].startswith(f"on {server.target}: ") and f"{os.cpu_count()} cores" in lines[-1]
    assert not any(d.exists() for d in _workdirs(proc.stderr))


@needs_sshd
def test_api_copies_companions_and_manifests_into_one_folder_and_removes_it(host, artifact, tmp_path):
    ov = pytest.importorskip("openvino")
    xml = tmp_path / "tiny.xml"
    ov.save_model(ov.convert_model(str(artifact)), str(xml))
    Manifest(format="openvino", precision="fp16").write(manifest_path(xml))
    other = tmp_path / "other" / "tiny.onnx"  # the same name as ``artifact``: must not overwrite it there
    other.parent.mkdir()
    other.write_bytes(artifact.read_bytes())
    with host:
        workdir = Path(host.workdir)
        assert workdir.is_dir() and workdir.name.startswith("edgecv-bench-")
        a = BenchResult(**host.benchmark(artifact, runs=3, warmup=0, threads=1))
        x = BenchResult(**host.benchmark(xml, runs=3, warmup=0, threads=1))
        o = BenchResult(**host.benchmark(other, runs=3, warmup=0, threads=1, batch=2))
        copied = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    assert copied == ["1", "1/tiny.onnx", "tiny.bin", "tiny.onnx", "tiny.onnx.json", "tiny.xml", "tiny.xml.json"]
    assert not workdir.exists() and host.workdir is None
    assert (a.artifact, a.precision, a.backend) == (str(artifact), "fp32", "onnxruntime")
    assert (x.artifact, x.format, x.precision, x.backend) == (str(xml), "openvino", "fp16", "openvino")
    assert x.size_bytes == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    assert (o.artifact, o.precision, o.batch) == (str(other), "fp32", 2)  # no manifest: read from its graph
    assert o.throughput == pytest.approx(2e3 / o.mean_ms)
    assert a.device == x.device == host.device and a.device["remote"] == host.target


@needs_sshd
def test_check_and_a_single_benchmark_outside_a_with_block(host, artifact):
    device = host.check()
    assert device == {**local_device(), "remote": host.target}
    r = host.benchmark(artifact, runs=2, warmup=0, threads=1)
    local = benchmark(artifact, runs=2, warmup=0, threads=1).to_dict()
    assert list(r) == list(local) and r["device"] == device and host.workdir is None
    assert json.loads(json.dumps(r)) == r


@needs_sshd
def test_a_failing_remote_benchmark_is_one_line_and_cleans_up(host, artifact):
    with pytest.raises(BackendError) as err:
        with host:
            workdir = Path(host.workdir)
            host.benchmark(artifact, runs=2, warmup=0, backend="litert")
    assert str(err.value) == (f"{host.target}: benchmark of tiny.onnx failed: "
                              "backend 'litert' cannot run onnx files; use one of: onnxruntime, openvino")
    assert not workdir.exists()


@needs_sshd
def test_bad_local_settings_fail_before_copying(host, artifact, tmp_path):
    with host:
        with pytest.raises(ConfigError, match="runs must be >= 1"):
            host.benchmark(artifact, runs=0)
        with pytest.raises(ModelFileError, match="weights file tiny.bin is missing"):
            (tmp_path / "tiny.xml").write_text("<?xml version='1.0'?><net/>")
            host.benchmark(tmp_path / "tiny.xml")
        assert list(Path(host.workdir).iterdir()) == []


@needs_sshd
def test_a_closed_port_is_unreachable(server, artifact):
    port = free_port()
    bad = RemoteHost(server.target, python=sys.executable, port=port, identity=server.identity, options=server.options)
    message = f"{server.target}: ssh failed (ssh: connect to host 127.0.0.1 port {port}: Connection refused)"
    with pytest.raises(ConfigError) as err:
        bad.check()
    assert str(err.value) == message
    proc = edgecv("bench", artifact, *_cli_remote(server, port=port))
    assert proc.returncode == 2 and proc.stderr.strip() == f"edgecv: error: {message}"


@needs_sshd
def test_a_key_the_server_does_not_know_is_refused(server, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")], check=True)
    bad = RemoteHost(server.target, python=sys.executable, port=server.port, identity=tmp_path / "stranger",
                     options=server.options)
    with pytest.raises(ConfigError, match=r"ssh failed \(.*Permission denied \(publickey\)\.\); only key authentication"):
        bad.check()


@needs_sshd
def test_a_python_without_edgecv(server, artifact, tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = str(tmp_path / "bare" / "bin" / "python")
    with pytest.raises(ConfigError) as err:
        RemoteHost(server.target, python=bare, **server.host_kwargs).check()
    assert str(err.value) == (f"{server.target}: edgecv is not installed for {bare} "
                              "(ModuleNotFoundError: No module named 'edgecv'); pass --python")
    proc = edgecv("bench", artifact, *_cli_remote(server, python="/usr/bin/false"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"edgecv: error: {server.target}: edgecv is not installed for /usr/bin/false "
                                   "(exit code 1, no output); pass --python")
    not_found = re.escape(f"{server.target}: /nonexistent/python not found (") + ".*; pass --python$"
    with pytest.raises(ConfigError, match=not_found):
        RemoteHost(server.target, python="/nonexistent/python", **server.host_kwargs).check()


@needs_sshd
def test_the_device_verifies_the_copies_and_no_verify_reaches_it(host, artifact):
    """The device's edgecv checks the copied files against the copied manifest; ``verify=False`` passes
    ``--no-verify`` to it."""
    from edgecv.manifest import digest_files

    Manifest(format="onnx", precision="fp32", files=digest_files([artifact])).write(manifest_path(artifact))
    with host:
        assert host.benchmark(artifact, runs=2, warmup=0, threads=1)["verification"] == "verified"
    from tests.conftest import tiny_cnn_weights

    data = bytearray(artifact.read_bytes())
    data[data.index(tiny_cnn_weights()["w1"].tobytes()) + 3] ^= 0x40  # a conv weight: the file still loads
    artifact.write_bytes(bytes(data))
    with host, pytest.raises(BackendError) as info:
        host.benchmark(artifact, runs=2, warmup=0, threads=1)
    assert re.search(r"benchmark of tiny\.onnx failed: .*tiny\.onnx does not match its manifest \(sha256 expected", str(info.value))
    with host:
        assert host.benchmark(artifact, runs=2, warmup=0, threads=1, verify=False)["verification"] == "skipped (--no-verify)"
