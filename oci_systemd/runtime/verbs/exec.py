# SPDX-License-Identifier: Apache-2.0
"""`exec`: a new process in a running container's namespaces and cgroup.

Every Kubernetes ExecSync probe takes this path, so it asks systemd nothing (the status comes
from the record and the init, as runc's) and, where that is safe, its helper is a fork of this
runtime rather than a fresh interpreter (`_may_fork_exec_helper`).
"""

from __future__ import annotations

import errno
import os

from oci_systemd.errors import (
    ContainerNotFoundError,
    ContainerNotRunningError,
    IdlerError,
    InvalidStateError,
    OciSystemdError,
    SyscallError,
)
from oci_systemd.runtime import status
from oci_systemd.runtime.config_warnings import warn_about_capabilities
from oci_systemd.runtime.idler_client import reap_quietly
from oci_systemd.runtime.listen_fds import check_passed_fds
from oci_systemd.runtime.pid_file import write_pid_file
from oci_systemd.runtime.signals import become_subreaper, wait_forwarding_signals
from oci_systemd.runtime.state import Status
from oci_systemd.runtime.transitions import log_event

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Mapping
    from typing import Any

    from oci_systemd.container import config
    from oci_systemd.container.channel import Channel
    from oci_systemd.container.protocol import ExecPlan
    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.state import Record
    from oci_systemd.runtime.terminal import ConsoleListener, Relay
else:
    import _signal  # the C module: `signal` costs every exec its enums


def exec_process(
    rt: Runtime,
    cid: str,
    process: dict[str, Any],
    *,
    detach: bool = False,
    pid_file: str | None = None,
    console_socket: str | None = None,
    preserve_fds: int = 0,
) -> int:
    """Run a process in a running container's namespaces and cgroup; its exit status.

    In the foreground with process.terminal and no console socket, the process's pty is
    relayed to the caller's terminal, as `runc exec -t` does (terminal.py). The process is
    validated here, once, whoever built it (`--process`, flags: exec_process.py)."""
    from oci_systemd.runtime import spec

    warn_about_capabilities(cid, spec.parse_process(process).get("capabilities"))
    if not process.get("terminal") or console_socket or detach:
        return _exec(rt, cid, process, detach, pid_file, console_socket, preserve_fds, None)
    from oci_systemd.runtime.terminal import ConsoleListener

    listener = ConsoleListener()
    try:
        return _exec(rt, cid, process, detach, pid_file, console_socket, preserve_fds, listener)
    finally:
        listener.close()


def _exec(
    rt: Runtime,
    cid: str,
    process: dict[str, Any],
    detach: bool,
    pid_file: str | None,
    console_socket: str | None,
    preserve_fds: int,
    console_listener: ConsoleListener | None,
) -> int:
    from oci_systemd.container import channel, protocol
    from oci_systemd.runtime import cgroups, idler_client

    check_passed_fds(preserve_fds)
    with rt.store.locked(cid, shared=True) as record:
        found = status.exec_status(rt.store, record, rt.manager)
        if found is Status.PAUSED:
            raise InvalidStateError("cannot exec in a paused container", status=found.value)
        if not found.can_exec():
            raise ContainerNotRunningError(cid, found.value)
        config = rt.store.read_config(cid)
    if process.get("terminal") and not console_socket:
        if console_listener is None:  # runc's words: only a detached exec comes here
            raise OciSystemdError(
                "cannot allocate tty if runc will detach without setting console socket",
                hint="pass --console-socket PATH, or leave out --detach",
            )
        from oci_systemd.runtime.terminal import exec_console_path

        console_socket = exec_console_path(rt.store.dir(cid))
        console_listener.bind(console_socket)
    plan: ExecPlan = {
        "exec": True,
        "id": cid,
        "target_pid": record["pid"],
        "config": _exec_config(process, config),
        "console_socket": os.path.abspath(console_socket) if console_socket else None,
        "extra_fds": preserve_fds,
        "listen_fds": 0,
    }
    if not detach:  # only when we wait for the process
        become_subreaper()
    try:
        fork = _may_fork_exec_helper(config, process, rt.store.dir(cid))
    except FileNotFoundError:
        raise ContainerNotFoundError(cid) from None  # deleted since the check above
    if fork:
        chan, idler = _fork_exec_helper(plan, preserve_fds)
    else:
        chan, idler = idler_client.spawn_idler(preserve_fds)
        protocol.send_plan(chan, plan)
    child = 0
    try:
        # The helper first, as runc does with `runc init`: the move costs an RCU grace
        # period (~10-20 ms) that now overlaps the helper's setns, and the process it forks
        # is born in the container's cgroup. If the fork won the race, it is moved after.
        try:
            cgroups.join(idler, record["pid"])
        except SyscallError:
            pass  # the helper died: its report (or EOF) below says why
        child = protocol.recv_pid(chan)
        os.waitpid(idler, 0)
        idler = 0  # reaped: never signalled again (its pid may be reused)
        if cgroups.cgroup_of(child) != cgroups.cgroup_of(record["pid"]):
            _join_cgroup(rt, record, child)
        protocol.send_start(chan)
        try:
            idler_client.await_exec(chan, idler_client.seccomp_agent(record, child, Status.RUNNING))
        except channel.ChannelClosed:
            raise IdlerError("the process died before it could exec") from None
    except BaseException:
        # Also when the helper or the process reported an error: they exit right after their
        # report, and a SIGKILL then changes nothing but the wait.
        for pid in (child, idler):
            if pid:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
                reap_quietly(pid)
        raise
    finally:
        chan.close()
    log_event(
        "EXEC",
        record,
        "running",
        f"Process {child} exec'd in container {cid}",
        extra={"COMMAND": " ".join(process.get("args") or []), "EXEC_PID": child},
    )
    if pid_file:
        write_pid_file(pid_file, child)
    if detach:
        return 0
    if console_listener is None:
        return wait_forwarding_signals(child)
    relay = _exec_relay(console_listener, child)
    try:
        return wait_forwarding_signals(child, relay)
    finally:
        relay.close()  # the caller's terminal back, also on errors


def _join_cgroup(rt: Runtime, record: Record, pid: int) -> None:
    """Move `pid` into the init's cgroup. A user may write the container's cgroup.procs but
    not that of the common ancestor of its own cgroup (a login's session scope, say) and the
    container's: the kernel refuses (EACCES), so the user's manager moves it, asking PID 1
    for the move (AttachProcessesToUnit), as it did for the idler at create."""
    from oci_systemd.runtime import cgroups, rootless

    try:
        cgroups.join(pid, record["pid"])
    except SyscallError as exc:
        init_cgroup = cgroups.cgroup_of(record["pid"]) or ""
        unit_suffix = "/" + record["scope"]
        if exc.errno != errno.EACCES or not rootless.is_rootless() or unit_suffix not in init_cgroup:
            raise
        subcgroup = init_cgroup.rpartition(unit_suffix)[2] or "/"
        with rt.manager as bus:
            bus.attach_processes(record["scope"], subcgroup, [pid])


def _exec_config(process: dict[str, Any], created: config.Config) -> config.Config:
    """The exec plan's config: the process, and what of the container's config applies to it
    too (its seccomp filter and personality)."""
    linux = created.get("linux") or {}
    picked: config.Linux = {}
    if "seccomp" in linux:
        picked["seccomp"] = linux["seccomp"]
    if "personality" in linux:
        picked["personality"] = linux["personality"]
    proc: config.Process = process  # type: ignore[assignment]  # the caller's JSON, checked by spec.parse_process
    return {"process": proc, "linux": picked}


# Left in the state directory by an exec whose process may hold CAP_SYS_PTRACE: from then on
# every exec runs its helper from the read-only interpreter (see _may_fork_exec_helper).
PTRACE_EXEC_MARK = "ptrace-exec"


def _may_ptrace(process: Mapping[str, Any]) -> bool:
    """Whether `process` may hold CAP_SYS_PTRACE: in its bounding set, or no capabilities
    given at all (then the bounding set is not reduced)."""
    caps = process.get("capabilities")
    return caps is None or "CAP_SYS_PTRACE" in (caps.get("bounding") or ())


def _may_fork_exec_helper(created: config.Config, process: dict[str, Any], state_dir: str) -> bool:
    """Whether exec's helper may be a fork of this runtime (fast) rather than an interpreter
    started from a read-only mount of it (`spawn_idler`, interpreter.py).

    A forked helper's process in the container runs with `/proc/<pid>/exe` leading to the
    host's writable interpreter until it execs: a container process that may ptrace it could
    keep that fd and reopen it for writing later (CVE-2019-5736). Non-dumpable, it is out of
    reach unless the attacker has CAP_SYS_PTRACE in the user namespace that owns its memory:
    the host's. So the fork is safe when the container has a user namespace of its own, or
    when neither its init nor any process exec'd into it so far may hold CAP_SYS_PTRACE (the
    bounding set is inherited and can only shrink)."""
    namespaces = (created.get("linux") or {}).get("namespaces") or ()
    if any(ns.get("type") == "user" for ns in namespaces):
        return True
    mark = os.path.join(state_dir, PTRACE_EXEC_MARK)
    if _may_ptrace(process):
        # Remembered before this process exists, for every later exec (the state directory
        # is root's; delete removes it).
        os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        return False
    return not _may_ptrace(created.get("process") or {}) and not os.path.lexists(mark)


def _fork_exec_helper(plan: ExecPlan, extra_fds: int) -> tuple[Channel, int]:
    """fork a child that joins the container and forks the exec'd process (idler.exec_forked);
    (channel, pid). A fork, not spawn_idler's fresh interpreter: exec is every probe's path,
    and a second `python -I -S` start is most of its time. Single-threaded here (no D-Bus),
    so the child may setns into the mount namespace. Its channel moves above the passed fds."""
    from oci_systemd.container.channel import Channel

    ours, theirs = Channel.pair()
    pid = os.fork()
    if pid == 0:
        try:
            ours.close()
            target = 3 + extra_fds + 16
            os.dup2(theirs.fileno(), target, inheritable=False)
            theirs.close()
            from oci_systemd.container import idler

            idler.exec_forked(Channel.from_fd(target), plan)
        finally:
            os._exit(127)
    theirs.close()
    return ours, pid


def _exec_relay(listener: ConsoleListener, child: int) -> Relay:
    """The relay of exec's process `child`: its helper sent the master before it exec'd, so it
    is waiting. Without it the process would write to a pty nobody reads: it is killed."""
    try:
        return listener.relay()
    except BaseException:
        try:
            os.kill(child, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        reap_quietly(child)
        raise
