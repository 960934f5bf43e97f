# SPDX-License-Identifier: Apache-2.0
"""`exec` into a running container, and terminals through --console-socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import bundles
import pytest
from test_lifecycle import Container, start_sleeping, wait_for

from oci_systemd.devtools.sandbox import Sandbox

# Receives the pty master over SCM_RIGHTS like conmon, then copies what the pty prints.
CONSOLE_RECEIVER = r"""
import os, socket, sys, time
path, out = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path); srv.listen(1)
print("ready", flush=True)
conn, _ = srv.accept()
msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
with open(out, "wb") as f:
    f.write(b"NAME=" + msg + b"\n")
    f.flush()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            data = os.read(fds[0], 4096)
        except OSError:
            break
        if not data:
            break
        f.write(data); f.flush()
"""


@pytest.fixture
def running(sandbox: Sandbox) -> Iterator[Container]:
    c = start_sleeping(sandbox)
    yield c
    c.rt("delete", "--force", c.id)


def test_exec_shares_namespaces(running: Container, sandbox: Sandbox) -> None:
    proc = running.rt("exec", running.id, "sh", "-c", "hostname; ps -o pid,args; cat /proc/self/mountinfo")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "oci-systemd"
    assert any(line.split()[:2] == ["1", "sleep"] for line in lines[1:4]), (
        "not in the container's pid namespace"
    )
    assert any(line.split()[4:5] == ["/proc"] for line in lines), "the container's /proc is not mounted"
    ns = running.rt(
        "exec", running.id, "sh", "-c", "readlink /proc/1/ns/mnt; readlink /proc/self/ns/mnt"
    ).stdout.split()
    assert ns[0] == ns[1]


def test_exec_status_and_errors(running: Container) -> None:
    assert running.rt("exec", running.id, "sh", "-c", "exit 7").returncode == 7
    missing = running.rt("exec", running.id, "no-such-program")
    assert missing.returncode == 127
    assert "executable file not found" in missing.stderr
    absent = running.rt("exec", "no-such-container", "true")
    assert absent.returncode == 1 and "container does not exist" in absent.stderr


def test_exec_settings(running: Container) -> None:
    proc = running.rt(
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--user",
        "65534:65534",
        running.id,
        "sh",
        "-c",
        'echo "$FOO"; pwd; id -u; id -g',
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["bar", "/tmp", "65534", "65534"]


def test_exec_no_host_fds_and_in_scope(running: Container, sandbox: Sandbox) -> None:
    proc = running.rt("exec", running.id, "sh", "-c", "ls /proc/self/fd")
    assert sorted(proc.stdout.split()) == ["0", "1", "2", "3"]  # 3: ls's own directory fd
    # A detached process keeps the stdio it was given: don't hand it our pipes.
    detached = running.rt(
        "exec",
        "--detach",
        "--pid-file",
        f"{running.bundle}/exec.pid",
        running.id,
        "sleep",
        "100",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        capture_output=False,
    )
    assert detached.returncode == 0, detached.stderr
    pid = int((running.host_bundle / "exec.pid").read_text())
    pids = json.loads(running.rt("ps", "--format", "json", running.id).stdout)
    assert pid in pids


def test_exec_process_file_that_is_invalid_is_refused(running: Container) -> None:
    """A `--process` without args is refused before anything runs, naming the field."""
    (running.host_bundle / "bad-process.json").write_text(json.dumps({"args": [], "cwd": "/"}))
    proc = running.rt("exec", "--process", f"{running.bundle}/bad-process.json", running.id)
    if os.environ.get("OCI_RUNTIME") == "runc":
        # runc exits 255 for every error of its own in exec ("exec failed: args must not be
        # empty"); oci-systemd exits 1, as for its other errors (a known difference).
        assert proc.returncode == 255 and "args must not be empty" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 1 and "process.args" in proc.stderr, proc.stderr


def test_exec_process_file(running: Container) -> None:
    process = {
        "args": ["sh", "-c", "echo from-process-json $X"],
        "cwd": "/",
        "env": ["X=1", "PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
    }
    (running.host_bundle / "process.json").write_text(json.dumps(process))
    proc = running.rt("exec", "--process", f"{running.bundle}/process.json", running.id)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "from-process-json 1"


def _console(sandbox: Sandbox, tag: str) -> tuple[subprocess.Popen[str], str, Callable[[], str]]:
    sock = f"{bundles.INNER_WORKDIR}/console-{tag}.sock"
    out = f"{bundles.INNER_WORKDIR}/console-{tag}.out"
    script = sandbox.host_path(f"{bundles.INNER_WORKDIR}/console_receiver.py")
    script.write_text(CONSOLE_RECEIVER)
    rec = subprocess.Popen(
        [*sandbox.nsenter_argv(), sys.executable, sandbox.inner_path(script), sock, out],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert rec.stdout is not None and rec.stdout.readline().strip() == "ready"

    def read() -> str:
        path = sandbox.host_path(out)
        return path.read_text(errors="replace") if path.exists() else ""

    return rec, sock, read


def test_exec_tty_with_console_socket(running: Container, sandbox: Sandbox) -> None:
    rec, sock, read = _console(sandbox, running.id)
    try:
        proc = running.rt(
            "exec", "--tty", "--console-socket", sock, running.id, "sh", "-c", "tty; stty size; echo tty-ok"
        )
        assert proc.returncode == 0, proc.stderr
        wait_for(lambda: "tty-ok" in read())
        text = read()
        assert "NAME=/dev/ptmx" in text
        assert "/dev/pts/" in text
    finally:
        rec.kill()
        rec.wait()


def test_create_with_terminal(sandbox: Sandbox) -> None:
    conf: dict[str, Any] = bundles.base_config()
    conf["process"].update(
        terminal=True,
        args=["sh", "-c", "tty; stty size; echo term-ok; sleep 2"],
        consoleSize={"height": 33, "width": 101},
    )
    c = Container(sandbox, conf)
    rec, sock, read = _console(sandbox, c.id)
    try:
        no_socket = c.rt("create", "--bundle", c.bundle, c.id)
        assert no_socket.returncode == 1 and "console socket" in no_socket.stderr
        assert c.create("--console-socket", sock).returncode == 0, c.output()
        assert c.rt("start", c.id).returncode == 0
        wait_for(lambda: "term-ok" in read())
        assert "33 101" in read()
    finally:
        rec.kill()
        rec.wait()
        c.rt("delete", "--force", c.id)
