# SPDX-License-Identifier: Apache-2.0
"""A private systemd booted as PID 1 of its own namespaces, for machines whose PID 1 is not systemd.

The runtime needs a real systemd (transient scopes, D-Bus, journald). Build and CI machines run
as root but with another PID 1, so `oci-systemd sandbox up` boots one inside private pid, mount,
cgroup, uts and ipc namespaces, following shared/notes/systemd-sandbox.md:

* one cgroup2 subtree per instance (two instances in one subtree break each other);
* private tmpfs on /run, /tmp and /var/tmp, and only our own unit directory: with the host's
  unit directories sysinit.target pulls systemd-tmpfiles-setup, which once wiped the host's /tmp;
* a private tmpfs on /var/log too, for a persistent journal that is not the host's;
* every record (pid, console log, units) lives in /var/lib/oci-systemd/sandbox/<name>/, never in
  the host's /run or /tmp.

This module holds the recipe (the units, systemd's environment, waiting for the bus), the
`Sandbox` object, teardown and the `oci-systemd sandbox` command line. `sandbox_namespaces`
makes the namespaces and prepares their mounts (the sandbox's own /dev/net/tun and /dev/fuse,
its journal); `sandbox_users` runs a local user's own systemd manager inside (`exec --user`).

The recorded pid is the host pid of the sandbox's systemd itself (`sandbox_namespaces.spawn`
leaves no launcher process behind): SIGKILL to it ends the whole pid namespace.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click

from oci_systemd.devtools import sandbox_namespaces
from oci_systemd.errors import SandboxError

RECORD_ROOT = Path("/var/lib/oci-systemd/sandbox")
CGROUP2_ROOT = Path("/sys/fs/cgroup/unified")
CGROUP_PREFIX = "oci-systemd-sandbox-"
SYSTEMD_BINARY = Path("/lib/systemd/systemd")
DIST_UNIT_DIR = Path("/lib/systemd/system")
TARGET = "oci-systemd-sandbox.target"
CONTAINER_ENV = "oci-systemd"
NAME_MAX = 64
BOOT_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

# Units copied verbatim from the distribution: the bus and the journal, nothing that touches the host.
_COPIED_UNITS = (
    "dbus.socket",
    "dbus.service",
    "systemd-journald.socket",
    "systemd-journald-dev-log.socket",
    "systemd-journald.service",
    # `journalctl --flush` once journald runs: only then does it write to /var/log/journal.
    "systemd-journal-flush.service",
)

# Targets that default dependencies name: without them systemd exits 255 before logging anything.
_STANDIN_TARGETS = (
    "sysinit", "basic", "sockets", "shutdown", "exit", "final", "local-fs", "paths", "timers",
    "slices", "network", "halt", "poweroff", "reboot", "emergency", "rescue", "default",
    "multi-user", "umount",
)  # fmt: skip

# ---------------------------------------------------------------------------------------------------
# Names, paths and checks


def validate_name(name: str) -> str:
    """Sandbox names become directory and cgroup names: keep them to a safe, bounded alphabet."""
    if not name or len(name) > NAME_MAX or not _NAME_RE.fullmatch(name) or name in (".", ".."):
        raise SandboxError(
            f"invalid sandbox name: {name!r}",
            hint=f"use 1 to {NAME_MAX} characters from A-Z a-z 0-9 _ . - (not '.' or '..')",
        )
    return name


def record_dir(name: str) -> Path:
    return RECORD_ROOT / validate_name(name)


def cgroup_dir(name: str) -> Path:
    return CGROUP2_ROOT / f"{CGROUP_PREFIX}{validate_name(name)}"


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "booting a private systemd needs root",
            hint="run as root (sudo oci-systemd sandbox ...); it creates namespaces, mounts and cgroups",
        )


def systemd_is_pid1() -> bool:
    """True when this machine already runs systemd as PID 1, so no sandbox is needed."""
    try:
        comm = Path("/proc/1/comm").read_text().strip()
    except OSError:
        return False
    return Path("/run/systemd/system").is_dir() and comm == "systemd"


def _pid_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None when the pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: the state follows the last ')'.
    return stat[stat.rindex(")") + 2]


def _is_gone(pid: int) -> bool:
    # The host's PID 1 here reaps orphans only now and then: a zombie holds no namespace, mount or
    # cgroup any more, so it counts as gone.
    return _pid_state(pid) in (None, "Z", "X")


def _pid_in_cgroup(pid: int, name: str) -> bool:
    """Guard against pid reuse: the sandbox's systemd lives in its own cgroup2 subtree."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    wanted = f"/{CGROUP_PREFIX}{name}"
    for line in lines:
        if line.startswith("0::"):
            path = line[3:]
            return path == wanted or path.startswith(wanted + "/")
    return False


# ---------------------------------------------------------------------------------------------------
# The sandbox object


@dataclass(frozen=True)
class Sandbox:
    name: str
    pid: int

    @property
    def record_dir(self) -> Path:
        return record_dir(self.name)

    @property
    def console_log(self) -> Path:
        return self.record_dir / "console.log"

    def is_running(self) -> bool:
        return not _is_gone(self.pid) and _pid_in_cgroup(self.pid, self.name)

    def nsenter_argv(self, *, cwd: str | None = None) -> list[str]:
        """Prefix that runs a command in the sandbox's namespaces (as a child of its pid namespace)."""
        argv = ["nsenter", "-t", str(self.pid), "-m", "-p", "-C", "-u", "-i"]
        # Entering a mount namespace resets the working directory to its root.
        if cwd is not None:
            argv.append(f"--wd={cwd}")
        return [*argv, "--"]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run() inside the sandbox; `cwd` is a path inside the sandbox."""
        cwd = kwargs.pop("cwd", None)
        return subprocess.run(
            [*self.nsenter_argv(cwd=os.fspath(cwd) if cwd is not None else None), *argv],
            **kwargs,
        )

    def host_path(self, inner_path: str | os.PathLike[str]) -> Path:
        """Where the host sees a path of the sandbox (its /tmp and /run are private tmpfs)."""
        return Path(f"/proc/{self.pid}/root") / os.fspath(inner_path).lstrip("/")

    def inner_path(self, host_path: str | os.PathLike[str]) -> str:
        """Inverse of host_path(): the path a command inside the sandbox must be given."""
        return "/" + os.fspath(Path(host_path).relative_to(self.host_path("/")))

    def system_state(self) -> str:
        """`systemctl is-system-running` inside: running, degraded, starting, ... or 'unknown'."""
        proc = self.run(
            ["systemctl", "is-system-running"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return proc.stdout.strip() or "unknown"


# ---------------------------------------------------------------------------------------------------
# Unit directory


def _write_units(unit_dir: Path) -> None:
    unit_dir.mkdir(parents=True, exist_ok=True)
    for unit in _COPIED_UNITS:
        text = (DIST_UNIT_DIR / unit).read_text()
        # /dev is the host's devtmpfs: a /dev/log symlink would land on the host.
        text = "\n".join(line for line in text.splitlines() if not line.startswith("Symlinks=")) + "\n"
        (unit_dir / unit).write_text(text)
    for target in _STANDIN_TARGETS:
        (unit_dir / f"{target}.target").write_text(
            f"[Unit]\nDescription=oci-systemd sandbox stand-in for {target}.target\n"
        )
    sockets = "dbus.socket systemd-journald.socket systemd-journald-dev-log.socket"
    (unit_dir / TARGET).write_text(
        "[Unit]\n"
        "Description=oci-systemd sandbox: system bus and journal\n"
        f"Requires={sockets}\n"
        f"After={sockets}\n"
        "Wants=systemd-journald.service systemd-journal-flush.service dbus.service\n"
        "AllowIsolate=yes\n"
    )


# ---------------------------------------------------------------------------------------------------
# Boot


def _systemd_argv() -> list[str]:
    return [os.fspath(SYSTEMD_BINARY), "--system", f"--unit={TARGET}", "--log-target=journal-or-kmsg"]


def _systemd_env(rec: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "container": CONTAINER_ENV,
        # Only our units and the private /run: never the host's unit directories (see module doc).
        "SYSTEMD_UNIT_PATH": f"{rec / 'units'}:/run/systemd/system",
        # The host's generators (fstab, getty, ...) have no business in the sandbox.
        "SYSTEMD_GENERATOR_PATH": os.fspath(rec / "generators"),
        "SYSTEMD_ENVIRONMENT_GENERATOR_PATH": os.fspath(rec / "generators"),
        "LANG": "C.UTF-8",
    }


def _console_tail(rec: Path, lines: int = 30) -> str:
    try:
        text = (rec / "console.log").read_text(errors="replace")
    except OSError:
        return "(no console log)"
    return "\n".join(text.splitlines()[-lines:]) or "(console log is empty)"


def _bus_answers(sb: Sandbox) -> bool:
    ping = [
        "busctl", "--system", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
        "org.freedesktop.DBus.Peer", "Ping",
    ]  # fmt: skip
    try:
        proc = sb.run(ping, stdin=subprocess.DEVNULL, capture_output=True, timeout=5, check=False)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def _wait_ready(sb: Sandbox, timeout: float) -> None:
    """Until the system bus answers for systemd and the boot job is finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sb.is_running():
            raise SandboxError(
                f"sandbox {sb.name}: systemd exited during boot\n{_console_tail(sb.record_dir)}",
                hint=f"full console log: {sb.console_log} (`oci-systemd sandbox down {sb.name}` removes it)",
            )
        bus_up = sb.host_path("/run/dbus/system_bus_socket").exists() and _bus_answers(sb)
        if bus_up and sb.system_state() not in ("initializing", "starting", "unknown"):
            return
        time.sleep(0.05)
    raise SandboxError(
        f"sandbox {sb.name}: system bus did not answer within {timeout:.0f}s\n"
        f"{_console_tail(sb.record_dir)}",
        hint=f"full console log: {sb.console_log} (`oci-systemd sandbox down {sb.name}` removes it)",
    )


def up(name: str = "default", *, timeout: float = BOOT_TIMEOUT) -> Sandbox:
    """Boot a private systemd named `name` and return once its system bus answers."""
    validate_name(name)
    require_root()
    if not SYSTEMD_BINARY.exists():
        raise SandboxError(f"{SYSTEMD_BINARY} not found", hint="apt-get install systemd dbus")
    existing = _read_sandbox(name)
    if existing is not None and existing.is_running():
        raise SandboxError(
            f"sandbox {name} is already running (pid {existing.pid})",
            hint=f"use it, or stop it with: oci-systemd sandbox down {name}",
        )
    _cleanup(name)  # leftovers of a dead one
    rec = record_dir(name)
    _write_units(rec / "units")
    (rec / "generators").mkdir()
    (rec / "console.log").touch(mode=0o600)
    cgroup = cgroup_dir(name)
    cgroup.mkdir()
    try:
        pid = sandbox_namespaces.spawn(name, cgroup, rec / "console.log", _systemd_argv(), _systemd_env(rec))
        (rec / "pid").write_text(f"{pid}\n")
        sb = Sandbox(name=name, pid=pid)
        _wait_ready(sb, timeout)
    except BaseException as exc:
        # Stop whatever half-booted, but never let cleanup trouble hide why the boot failed.
        try:
            _cleanup(name, keep_console_log=True)
        except Exception as cleanup_exc:
            exc.add_note(f"cleanup after failed boot also failed: {cleanup_exc}")
        raise
    return sb


# ---------------------------------------------------------------------------------------------------
# Lookup and teardown


def _read_sandbox(name: str) -> Sandbox | None:
    try:
        pid = int((record_dir(name) / "pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return Sandbox(name=name, pid=pid)


def get(name: str = "default") -> Sandbox:
    """The running sandbox called `name`; SandboxError if there is none."""
    validate_name(name)
    sb = _read_sandbox(name)
    if sb is None or not sb.is_running():
        raise SandboxError(
            f"sandbox {name} is not running", hint=f"start it with: oci-systemd sandbox up {name}"
        )
    return sb


def list_names() -> list[str]:
    names: set[str] = set()
    with contextlib.suppress(OSError):
        names.update(p.name for p in RECORD_ROOT.iterdir() if p.is_dir())
    with contextlib.suppress(OSError):
        names.update(p.name.removeprefix(CGROUP_PREFIX) for p in CGROUP2_ROOT.glob(f"{CGROUP_PREFIX}*"))
    return sorted(names)


def _cgroup_pids(cgroup: Path) -> list[int]:
    pids: list[int] = []
    for procs in cgroup.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.extend(int(p) for p in procs.read_text().split())
    return pids


def _walk_bottom_up(cgroup: Path) -> Iterator[Path]:
    for dirpath, _dirnames, _files in os.walk(cgroup, topdown=False):
        yield Path(dirpath)


def _kill_and_wait(pids: Sequence[int], timeout: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(not _is_gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            alive = [pid for pid in pids if not _is_gone(pid)]
            raise SandboxError(f"processes {alive} did not die after SIGKILL")
        time.sleep(0.02)


def _remove_cgroup(cgroup: Path, timeout: float) -> None:
    """rmdir bottom-up; a cgroup stays busy until the kernel has drained its dying tasks."""
    deadline = time.monotonic() + timeout
    while cgroup.exists():
        try:
            for path in _walk_bottom_up(cgroup):
                path.rmdir()
        except FileNotFoundError:
            continue
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SandboxError(f"cannot remove cgroup {cgroup}: {exc.strerror}") from exc
            # Anything that entered the subtree after systemd died (an nsenter'd straggler).
            _kill_and_wait(_cgroup_pids(cgroup), STOP_TIMEOUT)
            time.sleep(0.02)


def _cleanup(name: str, *, keep_console_log: bool = False) -> None:
    """Kill the sandbox and remove its cgroup subtree and record dir; fine if parts are missing.

    After a failed boot the console log stays (alone in the record dir) for whoever debugs it.
    """
    sb = _read_sandbox(name)
    cgroup = cgroup_dir(name)
    pids: list[int] = []
    # Only kill the recorded pid when it still is our systemd, not a reused pid.
    if sb is not None and not _is_gone(sb.pid) and _pid_in_cgroup(sb.pid, name):
        pids.append(sb.pid)
    if cgroup.exists():
        pids.extend(pid for pid in _cgroup_pids(cgroup) if pid not in pids)
    # SIGKILL to PID 1 of the namespace ends every process in it.
    _kill_and_wait(pids, STOP_TIMEOUT)
    if cgroup.exists():
        _remove_cgroup(cgroup, STOP_TIMEOUT)
    rec = record_dir(name)
    if keep_console_log and (rec / "console.log").exists():
        for path in rec.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != "console.log":
                path.unlink()
        return
    shutil.rmtree(rec, ignore_errors=True)


def down(name: str = "default") -> None:
    """Stop sandbox `name`: no process, mount or cgroup of it is left afterwards."""
    validate_name(name)
    require_root()
    if not record_dir(name).exists() and not cgroup_dir(name).exists():
        raise SandboxError(f"no sandbox named {name}", hint="list them with: oci-systemd sandbox status")
    _cleanup(name)


# ---------------------------------------------------------------------------------------------------
# Command line (registered by cli.py as `oci-systemd sandbox`)


def _fail(exc: SandboxError) -> NoReturn:
    click.echo(f"oci-systemd sandbox: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)
    sys.exit(exc.exit_code)


def _exec_inside(sb: Sandbox, argv: Sequence[str]) -> NoReturn:
    """Replace this process with nsenter: stdio, signals and the exit status pass straight through."""
    cwd = os.getcwd()
    inner_cwd = cwd if sb.host_path(cwd).is_dir() else None
    full = [*sb.nsenter_argv(cwd=inner_cwd), *argv]
    try:
        os.execvp(full[0], full)
    except OSError as exc:
        raise SandboxError(
            f"cannot run {full[0]}: {exc.strerror}", hint="apt-get install util-linux"
        ) from exc


@click.group(name="sandbox", help="Boot and use a private systemd (PID 1 of its own namespaces).")
def sandbox() -> None:
    pass


@sandbox.command(name="up")
@click.argument("name", default="default")
@click.option(
    "--timeout", type=float, default=BOOT_TIMEOUT, show_default=True, help="Seconds to wait for boot."
)
def up_command(name: str, timeout: float) -> None:
    """Boot sandbox NAME and wait until its system bus answers."""
    try:
        sb = up(name, timeout=timeout)
    except SandboxError as exc:
        _fail(exc)
    click.echo(f"sandbox {sb.name} is up: pid {sb.pid}, state {sb.system_state()}")


@sandbox.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.option(
    "--user",
    "-u",
    "user",
    metavar="USER",
    help="Run as USER (name or uid) with its own systemd manager, started on first use.",
)
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(name: str, command: tuple[str, ...], user: str | None) -> None:
    """Run COMMAND inside sandbox NAME (use `--` before it) and exit with its status.

    With --user, COMMAND runs as USER in a login's environment (XDG_RUNTIME_DIR,
    DBUS_SESSION_BUS_ADDRESS) with USER's `user@UID.service` running: `systemctl --user`
    and a rootless `oci-systemd` work as they do in a desktop session."""
    try:
        sb = get(name)
        if user is not None:
            # Here, not at the top: sandbox_users imports this module.
            from oci_systemd.devtools import sandbox_users

            command = tuple(sandbox_users.start_user(sb, user).argv(command))
        _exec_inside(sb, command)
    except SandboxError as exc:
        _fail(exc)


@sandbox.command(name="user-stop")
@click.argument("name")
@click.argument("user")
def user_stop_command(name: str, user: str) -> None:
    """Stop USER's systemd manager in sandbox NAME (`exec --user` started it)."""
    try:
        from oci_systemd.devtools import sandbox_users

        sandbox_users.stop_user(get(name), user)
    except SandboxError as exc:
        _fail(exc)


@sandbox.command(name="shell")
@click.argument("name", default="default")
def shell_command(name: str) -> None:
    """Open $SHELL (or /bin/bash) inside sandbox NAME."""
    try:
        _exec_inside(get(name), [os.environ.get("SHELL") or "/bin/bash"])
    except SandboxError as exc:
        _fail(exc)


@sandbox.command(name="status")
@click.argument("name", required=False)
def status_command(name: str | None) -> None:
    """Show NAME (or every sandbox): pid and `systemctl is-system-running`. Exit 1 if not running."""
    try:
        names = [validate_name(name)] if name is not None else list_names()
    except SandboxError as exc:
        _fail(exc)
    if not names:
        click.echo("no sandboxes", err=True)
        sys.exit(1)
    all_running = True
    for each in names:
        sb = _read_sandbox(each)
        if sb is None or not sb.is_running():
            click.echo(f"{each}\t{sb.pid if sb else '-'}\tnot running")
            all_running = False
            continue
        click.echo(f"{each}\t{sb.pid}\t{sb.system_state()}")
    sys.exit(0 if all_running else 1)


@sandbox.command(name="down")
@click.argument("name", default="default")
def down_command(name: str) -> None:
    """Stop sandbox NAME and remove its cgroup subtree and records."""
    try:
        down(name)
    except SandboxError as exc:
        _fail(exc)
    click.echo(f"sandbox {name} is down")
