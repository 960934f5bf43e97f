# SPDX-License-Identifier: Apache-2.0
"""The unit mode: the container is the calling service (docs/unit-mode.md).

A unit with `Delegate=yes` and `Environment=OCI_SYSTEMD_PLACEMENT=service` runs
`oci-systemd run` as its ExecStart. No scope is started: the idler is forked so that its
parent exits at once (`fork_detached`) and systemd, PID 1, becomes its parent; it enters the
leaf `<service cgroup>/container`; the runtime makes the container's init the service's main
process (`hand_over`: MAINPID= from a privileged sender, then BARRIER=1, so systemd has read
it before we exit) and exits. systemd then reaps the init itself: ExecMainStatus, Result=
and Restart= see the program's real exit, `systemctl stop` signals it directly, and its
stdout/stderr are the service's own (the journal stream systemd gave us).

Here: finding and checking the calling service, the detached fork, the handover, killing
the leaf, and `run` in this mode. The placement class itself (`ServiceUnit`) is in
placement.py, beside the scope's.
"""

from __future__ import annotations

import os

from oci_systemd.errors import OciSystemdError
from oci_systemd.runtime import cgroups
from oci_systemd.runtime.placement import PLACEMENT_ENV

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.placement import Placement
    from oci_systemd.runtime.state import Record
    from oci_systemd.runtime.systemd import Systemd

# How long systemd may take to read MAINPID= (BARRIER=1 answered); sd_notify_barrier's default.
BARRIER_TIMEOUT_S = 5.0
_HINT = (
    "run it as the ExecStart of a service with Type=notify and Delegate=yes (units/oci-container@.service), "
    f"or unset {PLACEMENT_ENV} for a scope of its own"
)


class PlacementError(OciSystemdError):
    """The unit mode was asked for where it cannot work; nothing was created."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint=_HINT)


def calling_service(*, user_manager: bool = False) -> tuple[str, str]:
    """(unit, slice) of the service that runs us, checked: started by systemd as a service
    (INVOCATION_ID, our cgroup is `<slice>/<name>.service` and carries that invocation id),
    with Delegate=yes (systemd marks the cgroup `trusted.delegate=1`), Type=notify
    (NOTIFY_SOCKET: the handover is a MAINPID= message). No D-Bus call.

    A user's manager marks its cgroups `user.delegate=1` since systemd 253 only; an unmarked
    one is asked over the bus later (`check_delegated`)."""
    invocation = os.environ.get("INVOCATION_ID", "")
    path = cgroups.cgroup_of(os.getpid()) or ""
    unit = os.path.basename(path)
    if not invocation or not unit.endswith(".service"):
        where = f"cgroup {path}" if path else "no cgroup2 hierarchy"
        raise PlacementError(f"{PLACEMENT_ENV}=service: not run by a systemd service ({where})")
    directory = service_cgroup_dir(path)
    if _xattr(directory, "invocation_id") not in (None, invocation):
        raise PlacementError(f"{PLACEMENT_ENV}=service: cgroup {path} is not this invocation's")
    mark = _xattr(directory, "delegate")
    if mark != "1" and not (user_manager and mark is None):
        raise _not_delegated(unit)
    if not os.environ.get("NOTIFY_SOCKET"):
        raise PlacementError(
            f"{PLACEMENT_ENV}=service: {unit} is not Type=notify (no NOTIFY_SOCKET); the container's "
            "init becomes its main process with MAINPID="
        )
    parent = os.path.basename(os.path.dirname(path))
    return unit, parent if parent.endswith(".slice") else "-.slice"


def _not_delegated(unit: str) -> PlacementError:
    return PlacementError(
        f"{PLACEMENT_ENV}=service: {unit} has no Delegate=yes; the container needs a cgroup "
        "of its own below the service's"
    )


def check_delegated(bus: Systemd, record: Record) -> None:
    """Delegate=yes of the service, asked over the bus where its cgroup carries no mark (a
    user's manager before systemd 253); called before anything is moved into the cgroup."""
    directory = service_cgroup_dir(os.path.dirname(leaf_cgroup(record)))
    if _xattr(directory, "delegate") == "1":
        return
    props = bus.unit_properties(record["scope"], "org.freedesktop.systemd1.Service", ["Delegate"])
    if props.get("Delegate") is not True:
        raise _not_delegated(record["scope"])


def service_cgroup_dir(path: str) -> str:
    mount = cgroups.unified_mount()
    if mount is None:
        raise PlacementError(f"{PLACEMENT_ENV}=service needs the unified cgroup hierarchy (cgroup2)")
    return os.path.join(mount, path.lstrip("/"))


def _xattr(directory: str, name: str) -> str | None:
    """systemd's `trusted.<name>` (root's) or `user.<name>` mark on a cgroup; None if neither."""
    for prefix in ("trusted.", "user."):
        try:
            return os.getxattr(directory, prefix + name).decode(errors="replace")
        except OSError:
            continue
    return None


def slice_path(slice_: str) -> str:
    """`a-b.slice` -> `a.slice/a-b.slice`: where systemd puts a slice in the hierarchy."""
    if slice_ in ("", "-.slice"):
        return ""
    parts = slice_.removesuffix(".slice").split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def container_cgroup() -> str:
    """The container's cgroup below the calling service's own (ours, checked by
    calling_service): `/system.slice/oci-container@x.service/container`, or in a user's manager
    `/user.slice/user-1000.slice/user@1000.service/app.slice/oci-container@x.service/container`."""
    return f"{(cgroups.cgroup_of(os.getpid()) or '').rstrip('/')}/{cgroups.LEAF}"


def leaf_cgroup(record: Record) -> str:
    """The container's cgroup path, as create recorded it (records written before it did were
    the system manager's: the path follows from the slice)."""
    if record.get("cgroup"):
        return record["cgroup"]
    return "/".join(("", slice_path(record["slice"]), record["scope"], cgroups.LEAF)).replace("//", "/")


def fork_detached() -> int:
    """fork() whose child is not ours: an intermediate forks it and exits, so the kernel gives
    it to the next subreaper up, systemd (PID 1, or a user's manager, which makes itself a
    subreaper; we are not one in this mode). 0 in the child, its pid in the parent. Only then
    is the init "our child" to systemd when MAINPID= names it, which is what lets systemd reap
    it and see its exit status."""
    r, w = os.pipe()
    mid = os.fork()
    if mid == 0:
        os.close(r)
        child = os.fork()
        if child == 0:
            os.close(w)
            return 0
        os.write(w, str(child).encode())
        os._exit(0)
    os.close(w)
    try:
        data = b""
        while chunk := os.read(r, 32):
            data += chunk
    finally:
        os.close(r)
        os.waitpid(mid, 0)
    if not data:
        raise OciSystemdError("cannot start the idler: its detaching fork failed")
    return int(data)


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def hand_over(init_pid: int, *, ready: bool, timeout: float = BARRIER_TIMEOUT_S) -> None:
    """Make `init_pid` the service's main process: MAINPID= (and READY=1 in the same message,
    while we are still the main process that NotifyAccess=main listens to), then BARRIER=1 and
    wait until systemd closed the barrier's fd: it has then processed MAINPID=, and we may exit.

    A pid namespace's init is the idler's child; the idler exited right after forking it, so
    the init is reparented to the manager (PID 1; a user's manager, whose pid systemd gives its
    services as MANAGERPID). We wait for that, so that systemd finds it its own child and does
    not log "Supervising process N which is not our child"."""
    import time

    from oci_systemd.runtime import sdnotify

    manager = int(os.environ.get("MANAGERPID") or 1)
    deadline = time.monotonic() + 1.0
    while parent_pid(init_pid) not in (manager, None) and time.monotonic() < deadline:
        time.sleep(0.001)
    message = f"MAINPID={init_pid}\n" + ("READY=1\n" if ready else "")
    try:
        read = sdnotify.notify_barrier(message, os.environ["NOTIFY_SOCKET"], timeout=timeout)
    except OSError as exc:
        raise OciSystemdError(f"cannot hand the container over to the service: {exc}") from exc
    if not read:
        raise OciSystemdError(f"systemd did not read MAINPID={init_pid} within {timeout:g} s (BARRIER=1)")


def kill_leaf(record: Record) -> None:
    """SIGKILL every process of the container's cgroup (cgroup.kill) and remove the cgroup.
    Never the service itself: delete runs as its ExecStartPre/ExecStopPost too."""
    import time

    directory = service_cgroup_dir(leaf_cgroup(record))
    try:
        with open(os.path.join(directory, "cgroup.kill"), "w", encoding="ascii") as f:
            f.write("1")
    except FileNotFoundError:
        return  # no such cgroup: nothing of the container is left
    except OSError:
        _kill_each(directory)
    deadline = time.monotonic() + 5.0
    while True:
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise OciSystemdError(f"cannot remove the container's cgroup {directory}") from None
            time.sleep(0.01)  # busy until the killed processes are gone


def _kill_each(directory: str) -> None:
    """Without cgroup.kill (Linux < 5.14): SIGKILL what cgroup.procs lists."""
    for dirpath, _dirs, _files in os.walk(directory):
        try:
            with open(os.path.join(dirpath, "cgroup.procs"), encoding="ascii") as f:
                pids = [int(line) for line in f if line.strip()]
        except OSError:
            continue
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


def notify_mode(record: Record) -> str:
    from oci_systemd.runtime.notify_passthrough import mode_of

    return mode_of(record.get("annotations") or {})


def _reclaim_stale(rt: Runtime, cid: str) -> None:
    """A record of this id whose container has stopped is what a crash left behind (the
    service's ExecStopPost= did not run): delete it, so the unit needs no ExecStartPre= of
    its own (one `oci-systemd` process fewer on every start, ~25 ms). systemd runs one
    instance of the service at a time; a live container of this id is someone else's, and
    create refuses it as before."""
    from oci_systemd.errors import ContainerNotFoundError
    from oci_systemd.runtime import status
    from oci_systemd.runtime.state import Status

    try:
        with rt.store.locked(cid, shared=True) as record:
            stopped = status.status(rt.store, record, rt.manager) is Status.STOPPED
    except ContainerNotFoundError:
        return
    if stopped:
        rt.delete(cid, force=True)


def run_as_service(
    rt: Runtime,
    cid: str,
    placement: Placement,
    *,
    bundle: str,
    console_socket: str | None,
    pid_file: str | None,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: int,
) -> int:
    """`run` as the service's ExecStart in the unit mode: create, hand over, start, exit.

    The handover comes before start in both notify modes: the init is then the main process
    (systemd's own child, waiting on its start socket) before the program can run, let alone
    exit, so systemd always reaps the program and records its exit status; the program's own
    READY=1 ("container" mode, sent to the service's socket bound into the container) comes
    from the main process and NotifyAccess=main accepts it. In the "started" mode READY=1 goes
    with MAINPID=, in one message sent while we are still the main process: the unit is
    active as the program is exec'd (an exec that fails after that is the main process
    exiting 127, and the unit fails). Nothing of ours stays: the runtime exits."""
    from oci_systemd.runtime.verbs import create, start

    _reclaim_stale(rt, cid)
    record = create.create(
        rt,
        cid,
        bundle=bundle,
        console_socket=console_socket,
        pid_file=pid_file,
        no_pivot=no_pivot,
        no_new_keyring=no_new_keyring,
        preserve_fds=preserve_fds,
        placement=placement,
    )
    try:
        hand_over(record["pid"], ready=notify_mode(record) == "started")
        start.start(rt, cid)
    except BaseException:
        rt.delete(cid, force=True)
        raise
    return 0
