# SPDX-License-Identifier: Apache-2.0
"""`run` in the foreground with `process.terminal` and no `--console-socket`: the caller's
terminal becomes the container's, as with `runc run` and `crun run`.

The idler already knows one way to hand over a pty: it opens one in the container's devpts
and sends the master over a console socket (runc's protocol, `idler._send_pty`). `run` makes
that socket itself (`ConsoleListener`, `console.sock` in the state directory, 0600), receives
the master, and relays it (`Relay`): the caller's stdin (raw mode, when it is a terminal) to
the master, the master to the caller's stdout, the caller's window size to the pty (again on
every SIGWINCH). The caller's terminal attributes are restored however `run` ends.

`exec -t` in the foreground without a console socket does the same with a socket of its own
(`exec_console_path`: a unique name per exec, so it never meets a `run`'s `console.sock` or
another exec's), bound before the helper starts; the helper sends the master right before it
execs the process, so it is waiting by the time the runtime has seen the exec succeed.

Only `run` and `exec` import this module, and only for a terminal without a console socket:
`select`, `termios` and `fcntl` are imported when a relay is really set up.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: `run` should not pay for typing
if TYPE_CHECKING:
    from typing import Any

    from oci_systemd.container.channel import UnixSocket

CONSOLE_SOCKET = "console.sock"  # in the container's state directory
EXEC_CONSOLE_PREFIX = "exec-console."  # + a random part + ".sock", one per foreground exec -t
_RECEIVE_TIMEOUT = 10.0  # the master is sent before CREATED: it is already waiting
_DRAIN_QUIET = 0.1  # after `pid` exits: stop once the pty has been quiet this long
_CHUNK = 65536


class ConsoleListener:
    """The console socket of a foreground `run` or `exec`: bound before the idler (or exec's
    helper) starts, as it connects early, while the host's paths are reachable; read once
    `create` has succeeded, or once exec's process runs."""

    def __init__(self) -> None:
        self.sock: UnixSocket | None = None
        self.path = ""

    def bind(self, path: str) -> None:
        from oci_systemd.container import channel

        # 0600 from the start, not chmod after bind: nobody else may hand us a "pty".
        sock = channel.bind_unix(path, mode=0o600)
        self.sock, self.path = sock, path
        sock.listen(1)

    def receive(self) -> int:
        """The pty master the idler sent (runc's protocol: one fd over SCM_RIGHTS)."""
        from oci_systemd.container import channel
        from oci_systemd.errors import OciSystemdError

        assert self.sock is not None
        self.sock.settimeout(_RECEIVE_TIMEOUT)
        try:
            conn, _ = self.sock.accept()
            try:
                conn.settimeout(_RECEIVE_TIMEOUT)
                _data, fds = channel.recv_fds(conn, 4096, 1)
            finally:
                conn.close()
        except OSError as exc:
            raise OciSystemdError(f"receiving the container's pty: {exc.strerror or exc}") from exc
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OciSystemdError("receiving the container's pty: expected one fd from the idler")
        return fds[0]

    def relay(self) -> Relay:
        """The master received, relayed: nothing else may connect afterwards (one pty per
        process), and the caller's terminal is raw (if it is one) and its size copied."""
        relay = Relay(self.receive())
        self.close()
        try:
            relay.begin()
        except BaseException:
            relay.close()
            raise
        return relay

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass  # delete removed the state directory


def exec_console_path(state_dir: str) -> str:
    """A console socket for one `exec -t`: execs may run side by side (they share the lock)."""
    return os.path.join(state_dir, f"{EXEC_CONSOLE_PREFIX}{os.urandom(8).hex()}.sock")


def _host_console() -> int | None:
    """The caller's terminal, for its window size: stdin, stdout or stderr, whichever is one
    (runc tries the three, as any of them may be redirected)."""
    for fd in (0, 1, 2):
        if os.isatty(fd):
            return fd
    return None


def make_raw(attrs: list[Any]) -> list[Any]:
    """cfmakeraw(3) on a termios.tcgetattr() list (what runc's console.SetRaw does)."""
    import termios

    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    cc = list(cc)
    cc[termios.VMIN] = 1
    cc[termios.VTIME] = 0
    return [iflag, oflag, cflag, lflag, ispeed, ospeed, cc]


class Relay:
    """The caller's terminal ↔ the container's pty master, for one foreground `run` or `exec`.

    `begin()` puts the caller's stdin in raw mode (only if it is a terminal: keys such as ^C
    then reach the container's pty, whose line discipline makes them signals) and copies the
    window size; `close()` restores the attributes (the caller calls it on every way out).
    `run(pid)` relays until the process `pid` (the init, or the exec'd process) exits.
    """

    def __init__(self, master: int) -> None:
        self.master = master
        self.console = _host_console()
        self.saved: list[Any] | None = None

    def begin(self) -> None:
        import termios

        if os.isatty(0):
            self.saved = termios.tcgetattr(0)
            termios.tcsetattr(0, termios.TCSANOW, make_raw(self.saved))
        self.resize()

    def close(self) -> None:
        """Restore the caller's terminal and close the master; a second call does nothing."""
        import termios

        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        if self.saved is not None:
            try:
                termios.tcsetattr(0, termios.TCSANOW, self.saved)
            except termios.error:
                pass  # the terminal went away (hangup): nothing left to restore
            self.saved = None

    def resize(self) -> None:
        """The caller's window size onto the pty; the kernel then sends SIGWINCH to the
        container's foreground process group. Without a terminal, consoleSize stays."""
        import fcntl
        import termios

        if self.console is None:
            return
        try:
            size = fcntl.ioctl(self.console, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        except OSError:
            pass  # a size we cannot read or set is no reason to stop the container

    def run(self, pid: int) -> None:
        """Copy both ways until `pid` exits, then what the pty still holds."""
        import select

        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._drain()
            return
        try:
            os.set_blocking(self.master, False)
            stdin_open = _readable_fd(0)
            pending = b""  # read from stdin, not yet taken by the pty
            while True:
                rlist = [self.master, pidfd] + ([0] if stdin_open and not pending else [])
                readable, writable, _ = select.select(rlist, [self.master] if pending else [], [])
                if self.master in readable and not self._copy_out():
                    return  # EIO: every process holding the pty's slave is gone
                if 0 in readable:
                    data = _read(0)
                    if data is not None:
                        stdin_open = bool(data)
                        pending += data
                if pending and self.master in writable:
                    pending = pending[_write_some(self.master, pending) :]
                if pidfd in readable:
                    self._drain()
                    return
        finally:
            os.close(pidfd)

    def _copy_out(self) -> bool:
        """One read of the master onto stdout; False at the pty's end (EIO)."""
        try:
            data = os.read(self.master, _CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not data:
            return False
        _write_all(1, data)
        return True

    def _drain(self) -> None:
        """After the process's exit: what it wrote is in the pty's buffer (the kernel may still
        be moving it from the slave's side), so read until EIO or a quiet moment."""
        import select

        while select.select([self.master], [], [], _DRAIN_QUIET)[0]:
            if not self._copy_out():
                return


def _readable_fd(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False  # closed: nothing to relay
    return True


def _read(fd: int) -> bytes | None:
    """A chunk of stdin; b"" at its end (an error ends it too), None if nothing is there
    after all (a non-blocking stdin shared with someone else)."""
    try:
        return os.read(fd, _CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _write_some(fd: int, data: bytes) -> int:
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0


def _write_all(fd: int, data: bytes) -> None:
    """To the caller's stdout; output nobody can take any more (EPIPE) is dropped, while the
    pty is still read so the container never blocks on it."""
    while data:
        try:
            data = data[os.write(fd, data) :]
        except OSError:
            return
