# SPDX-License-Identifier: Apache-2.0
"""`run` and `exec -t` in the foreground with process.terminal and no --console-socket, from a
terminal: the runtime relays a pty of its own (runc's and crun's behaviour). The caller here is
a real pty made by the test, the runtime's controlling terminal, as when a person types
`oci-systemd run` or `oci-systemd exec -t`.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bundles
import pytest
from test_lifecycle import Container, start_sleeping, wait_for
from test_process_parity import _is_oci_systemd

from oci_systemd.devtools.sandbox import Sandbox


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _make_controlling_tty() -> None:  # in the child, after setsid (start_new_session)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Caller:
    """`oci-systemd run` (or the runtime's arguments `words`) on a pty: `master` is the person
    at the keyboard."""

    def __init__(self, sandbox: Sandbox, c: Container, *extra: str, words: list[str] | None = None) -> None:
        self.master, self.slave = os.openpty()
        _set_size(self.slave, 37, 113)
        self.before = termios.tcgetattr(self.slave)
        self.seen = b""
        self.proc = subprocess.Popen(
            [
                *sandbox.nsenter_argv(),
                *bundles.runtime_argv(),
                *(words or ["run", *extra, "--bundle", c.bundle, c.id]),
            ],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            start_new_session=True,
            preexec_fn=_make_controlling_tty,
        )

    def expect(self, text: str, timeout: float = 20.0) -> str:
        """Read the terminal until `text` shows; everything read since the last match."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"{text!r} not seen; the terminal showed {self.seen!r}")
            try:
                self.seen += os.read(self.master, 4096)
            except OSError:  # EIO: nobody holds the slave any more
                raise AssertionError(f"{text!r} not seen; the terminal showed {self.seen!r}") from None
        head, _, self.seen = self.seen.partition(text.encode())
        return head.decode(errors="replace")

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")  # Enter sends CR, as a keyboard does

    def check_relay(self) -> None:
        """At a shell prompt: the caller's terminal is raw, the pty has its size, typed input
        arrives, and ^C is a byte for the container's pty (it interrupts the sleep there), not
        a SIGINT to the runtime."""
        during = termios.tcgetattr(self.slave)
        assert not during[3] & (termios.ICANON | termios.ECHO | termios.ISIG), "caller's terminal not raw"
        self.type("stty size; tty")
        assert "37 113" in self.expect("/dev/pts/"), "the caller's window size was not copied"
        self.type("echo typed-$((6*7))")
        self.expect("typed-42")
        self.type("sleep 100")
        self.expect("sleep 100")
        time.sleep(0.3)
        os.write(self.master, b"\x03")
        self.type("echo after-$((1+1))")
        self.expect("after-2", timeout=10)
        assert self.proc.poll() is None

    def check_resize(self) -> None:
        """At a shell prompt: a new window size reaches the pty."""
        _set_size(self.master, 40, 120)  # SIGWINCH to the runtime, the terminal's foreground
        # The resize reaches the container through the runtime's SIGWINCH handler: ask until then.
        for _ in range(20):
            self.type("echo S$(stty size | tr ' ' x)E")  # the echoed command line never matches
            shown = self.expect("E\r\n")
            if "S40x120" in shown:
                break
        assert "S40x120" in shown, shown

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def shell(sandbox: Sandbox) -> Iterator[tuple[Container, Caller]]:
    conf: dict[str, Any] = bundles.base_config()
    conf["process"].update(terminal=True, args=["sh"], consoleSize={"height": 5, "width": 6})
    c = Container(sandbox, conf)
    caller = Caller(sandbox, c)
    try:
        yield c, caller
    finally:
        caller.close()
        c.rt("delete", "--force", c.id)


def test_run_relays_the_callers_terminal(shell: tuple[Container, Caller], sandbox: Sandbox) -> None:
    c, caller = shell
    caller.expect("# ")  # busybox sh is interactive: its stdin is a terminal
    assert not sandbox.host_path(f"/run/oci-systemd/{c.id}/console.sock").exists(), "still listening"
    caller.check_relay()


def test_run_terminal_follows_window_changes(shell: tuple[Container, Caller]) -> None:
    _c, caller = shell
    caller.expect("# ")
    caller.check_resize()


def test_run_terminal_exit_status_and_restore(shell: tuple[Container, Caller], sandbox: Sandbox) -> None:
    c, caller = shell
    caller.expect("# ")
    caller.type("echo bye; exit 3")
    caller.expect("bye")
    assert caller.proc.wait(timeout=30) == 3
    assert termios.tcgetattr(caller.slave) == caller.before, "the caller's terminal was not restored"
    assert c.rt("state", c.id).returncode != 0, "run did not delete its container"


def test_run_terminal_restored_when_the_program_cannot_start(sandbox: Sandbox) -> None:
    conf: dict[str, Any] = bundles.base_config()
    # A failing startContainer hook: create succeeded, the relay is set up, start fails.
    conf["process"].update(terminal=True, args=["sh"])
    conf["hooks"] = {"startContainer": [{"path": "/bin/false"}]}
    c = Container(sandbox, conf)
    caller = Caller(sandbox, c)
    try:
        assert caller.proc.wait(timeout=30) != 0
        assert termios.tcgetattr(caller.slave) == caller.before
        assert not sandbox.host_path(f"/run/oci-systemd/{c.id}").exists()
    finally:
        caller.close()


def test_terminal_without_console_socket_is_refused_when_detached(sandbox: Sandbox) -> None:
    conf: dict[str, Any] = bundles.base_config()
    conf["process"].update(terminal=True, args=["true"])
    c = Container(sandbox, conf)
    proc = c.rt("run", "--detach", "--bundle", c.bundle, c.id)
    assert proc.returncode != 0
    assert "console" in proc.stderr and "socket" in proc.stderr  # crun says "--console-socket"
    assert c.rt("state", c.id).returncode != 0, "a refused run left a container"


def test_run_terminal_without_a_caller_terminal(sandbox: Sandbox) -> None:
    """stdin /dev/null, stdout a pipe (a script, CI): the pty's output still reaches stdout and
    the exit status comes back; there is no terminal to put in raw mode or to size from. (runc
    1.1.5 refuses this: "open /dev/tty: no such device or address"; the relay needs no tty.)"""
    conf: dict[str, Any] = bundles.base_config()
    # Much output right before the exit: all of it must come through the pty before run ends.
    conf["process"].update(terminal=True, args=["sh", "-c", "tty; seq 1 20000; echo out-$((1+2)); exit 4"])
    c = Container(sandbox, conf)
    proc = c.rt("run", "--bundle", c.bundle, c.id, start_new_session=True)
    assert proc.returncode == 4, proc.stderr
    assert "/dev/pts/" in proc.stdout and "\n20000\nout-3" in proc.stdout, proc.stdout[-200:]


def test_run_terminal_restored_after_a_forwarded_signal(sandbox: Sandbox) -> None:
    """SIGTERM to `run` goes to the container (which dies of it); run then restores the caller's
    terminal and exits 128+15. (No pid namespace: an init of one would ignore the signal.)"""
    conf: dict[str, Any] = bundles.base_config()
    conf["process"].update(terminal=True, args=["sleep", "100"])
    conf["linux"]["namespaces"] = [ns for ns in conf["linux"]["namespaces"] if ns["type"] != "pid"]
    c = Container(sandbox, conf)
    caller = Caller(sandbox, c)
    try:
        wait_for(lambda: c.rt("state", c.id).returncode == 0 and c.status() == "running")
        assert not termios.tcgetattr(caller.slave)[3] & termios.ICANON
        # nsenter forks the runtime: signal that child, the `run` process itself.
        runtime_pid = int(
            Path(f"/proc/{caller.proc.pid}/task/{caller.proc.pid}/children").read_text().split()[0]
        )
        os.kill(runtime_pid, signal.SIGTERM)
        assert caller.proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert termios.tcgetattr(caller.slave) == caller.before
    finally:
        caller.close()
        c.rt("delete", "--force", c.id)


# -- exec -t ---------------------------------------------------------------------------------


def _exec_console_sockets(sandbox: Sandbox, c: Container) -> list[str]:
    state_dir = sandbox.host_path(f"/run/oci-systemd/{c.id}")
    return [p.name for p in state_dir.glob("*.sock")] if state_dir.exists() else []


@pytest.mark.parametrize("helper", ["fork", "spawn"])
def test_exec_tty_relays_the_callers_terminal(sandbox: Sandbox, helper: str) -> None:
    """`exec -t ID sh` from a terminal: input, window size (and its changes), ^C, the exit
    status and the caller's terminal afterwards, on both of exec's helper paths: a fork of the
    runtime by default, a fresh interpreter when the init may hold CAP_SYS_PTRACE (which leaves
    the `ptrace-exec` mark, so the test sees which path ran)."""
    conf: dict[str, Any] = bundles.base_config()
    conf["process"]["args"] = ["sleep", "1000"]
    if helper == "spawn":
        for kind in ("bounding", "effective", "permitted"):
            conf["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")
    c = Container(sandbox, conf)
    assert c.create().returncode == 0, c.output()
    assert c.rt("start", c.id).returncode == 0
    caller = Caller(sandbox, c, words=["exec", "-t", c.id, "sh"])
    try:
        caller.expect("# ")  # busybox sh is interactive: its stdin is a terminal
        assert _exec_console_sockets(sandbox, c) == [], "still listening"
        if _is_oci_systemd():
            mark = sandbox.host_path(f"/run/oci-systemd/{c.id}/ptrace-exec").exists()
            assert mark == (helper == "spawn"), "not the helper path this test is about"
        caller.check_relay()
        caller.check_resize()
        caller.type("echo bye; exit 3")
        caller.expect("bye")
        assert caller.proc.wait(timeout=30) == 3
        assert termios.tcgetattr(caller.slave) == caller.before, "the caller's terminal was not restored"
        assert _exec_console_sockets(sandbox, c) == []
        assert c.status() == "running", "the container went with its exec"
    finally:
        caller.close()
        c.rt("delete", "--force", c.id)


def test_exec_tty_of_a_program_that_cannot_start(sandbox: Sandbox) -> None:
    """exec -t of a missing program: 127 as without a terminal (runc 1.1.5: 255), the caller's
    terminal as it was, no console socket left."""
    c = start_sleeping(sandbox)
    caller = Caller(sandbox, c, words=["exec", "-t", c.id, "/no/such/program"])
    try:
        status = caller.proc.wait(timeout=30)
        assert status == (127 if _is_oci_systemd() else 255), status
        assert termios.tcgetattr(caller.slave) == caller.before
        assert _exec_console_sockets(sandbox, c) == []
    finally:
        caller.close()
        c.rt("delete", "--force", c.id)


def test_exec_detached_tty_without_console_socket_is_refused(sandbox: Sandbox) -> None:
    """runc refuses it too, in these words: nobody would read the pty."""
    c = start_sleeping(sandbox)
    try:
        proc = c.rt("exec", "--detach", "--tty", c.id, "true")
        assert proc.returncode != 0
        assert "cannot allocate tty if runc will detach without setting console socket" in proc.stderr
        assert _exec_console_sockets(sandbox, c) == []
    finally:
        c.rt("delete", "--force", c.id)
