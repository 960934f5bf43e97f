# SPDX-License-Identifier: Apache-2.0
"""Lifecycle orchestration: the only module that sequences the others.

create:  validate -> claim the id -> spawn the idler -> (id maps) -> its init's pid ->
         transient scope with PIDs=[init] (JobRemoved waited) -> createRuntime hooks ->
         idler builds the rootfs -> record + pid file.
start:   connect to the idler's notify socket, send START, EOF means exec worked.
state:   the record + the scope's ActiveState (systemd) + a pid/start-time check.
kill:    Manager.KillUnit; delete: stop and reset the scope, poststop hooks, drop state.
"""

from __future__ import annotations

import os
import sys

from oci_systemd.errors import (
    ContainerNotFoundError,
    ContainerNotRunningError,
    HookError,
    IdlerError,
    InvalidStateError,
    OciSystemdError,
    SpecError,
    SyscallError,
)
from oci_systemd.runtime.log import log, rfc3339
from oci_systemd.runtime.state import (
    NOTIFY_SOCKET,
    Record,
    Status,
    Store,
    derive_status,
    pid_alive,
    process_start_time,
    validate_id,
)

# state/kill/delete import this module: no typing, contextlib or channel (socket) at import
# time. channel is imported by the paths that talk to an idler (create, start, exec).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable
    from typing import Any

    from oci_systemd.container.channel import Channel, RemoteError
    from oci_systemd.runtime.spec import Capabilities
    from oci_systemd.runtime.terminal import ConsoleListener, Relay
else:
    import _signal  # the C module: `signal` builds its enums at import (~1 ms with enum)

DEFAULT_SLICE = "system.slice"
UNIT_PREFIX = "oci-systemd"

# The scope's own properties; resources and annotations add theirs.
_SCOPE_BASE = (
    ("Delegate", "b", True),
    ("DefaultDependencies", "b", False),
    # A failed scope (OOM kill, say) is garbage-collected, so it never blocks the id.
    ("CollectMode", "s", "inactive-or-failed"),
    ("MemoryAccounting", "b", True),
    ("CPUAccounting", "b", True),
    ("IOAccounting", "b", True),
    ("TasksAccounting", "b", True),
    # `systemctl stop` sends SIGTERM, which a namespace's init without a handler never
    # sees; don't make it wait systemd's 90 s for the SIGKILL. 10 s is podman's and
    # docker's stop timeout; org.systemd.property.TimeoutStopUSec overrides it.
    ("TimeoutStopUSec", "t", 10_000_000),
)


def scope_for(cid: str, cgroups_path: str | None, *, systemd_cgroup: bool = True) -> tuple[str, str]:
    """(unit, slice) from linux.cgroupsPath in runc's `slice:prefix:name` form.

    `machine.slice:libpod:<id>` gives `libpod-<id>.scope` in machine.slice. A path in
    cgroupfs form (podman/containerd with their cgroupfs manager) or none at all gives
    the default `oci-systemd-<id>.scope` in system.slice.
    """
    from oci_systemd.runtime.systemd import unit_name_escape

    if cgroups_path and ":" in cgroups_path and not cgroups_path.startswith("/"):
        parts = cgroups_path.split(":")
        if len(parts) != 3:
            raise SpecError("linux.cgroupsPath", f"expected slice:prefix:name, got {cgroups_path!r}")
        slice_, prefix, name = parts
        slice_ = slice_ or DEFAULT_SLICE
        if not slice_.endswith(".slice"):
            raise SpecError("linux.cgroupsPath", f"{slice_!r} is not a slice name")
        if name.endswith(".slice"):
            raise SpecError("linux.cgroupsPath", "a slice as container cgroup is not supported")
        unit = (
            f"{unit_name_escape(prefix)}-{unit_name_escape(name)}.scope"
            if prefix
            else f"{unit_name_escape(name)}.scope"
        )
        if len(unit) > 255:
            raise SpecError("linux.cgroupsPath", f"unit name {unit[:40]}... is longer than 255 characters")
        return unit, slice_
    return f"{UNIT_PREFIX}-{unit_name_escape(cid)}.scope", DEFAULT_SLICE


def parse_signal(text: str) -> int:
    """`TERM`, `SIGTERM`, `term`, `15`, `SIGRTMIN+3` -> signal number."""
    name = text.strip().upper()
    if name.isdigit():
        num = int(name)
        if 0 < num < _signal.SIGRTMAX + 1:
            return num
        raise OciSystemdError(f"invalid signal: {text}")
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN+") or name.startswith("SIGRTMAX-"):
        base = _signal.SIGRTMIN if name.startswith("SIGRTMIN") else _signal.SIGRTMAX
        try:
            off = int(name[9:])
        except ValueError:
            raise OciSystemdError(f"unknown signal {text!r}") from None
        num = base + off if base == _signal.SIGRTMIN else base - off
        if _signal.SIGRTMIN <= num <= _signal.SIGRTMAX:
            return num
        raise OciSystemdError(f"invalid signal: {text}")
    found = _signal_number(name)
    if found is None:
        raise OciSystemdError(f"unknown signal {text!r}")
    return found


def _signal_number(name: str) -> int | None:
    """SIGTERM -> 15, as signal.Signals[name] (aliases such as SIGIOT included)."""
    if name.startswith("SIG_") or not name.isupper():  # SIG_DFL, SIG_BLOCK... are not signals
        return None
    value = getattr(_signal, name, None)
    return int(value) if isinstance(value, int) else None


def fault_point(name: str) -> None:
    """Die here with SIGKILL when OCI_SYSTEMD_FAULT names this point (fault-injection tests).

    Points: create:claimed, create:spawned, create:scoped, create:pid, create:built,
    start:sent, start:recorded, delete:killed, delete:stopped, delete:removed.
    """
    if os.environ.get("OCI_SYSTEMD_FAULT") == name:
        os.kill(os.getpid(), _signal.SIGKILL)


def _warn_about_labels(proc: dict[str, Any], linux: dict[str, Any]) -> None:
    """AppArmor/SELinux settings are accepted, and applied by nobody: say so when the host
    has no such LSM (this runtime doesn't load profiles or set labels)."""
    try:
        with open("/sys/kernel/security/lsm", encoding="ascii") as f:
            active = set(f.read().strip().split(","))
    except OSError:
        active = set()
    wanted = {
        "process.apparmorProfile": ("apparmor", proc.get("apparmorProfile")),
        "process.selinuxLabel": ("selinux", proc.get("selinuxLabel")),
        "linux.mountLabel": ("selinux", linux.get("mountLabel")),
    }
    for field, (lsm, value) in wanted.items():
        if value:
            state = "is not active on this host" if lsm not in active else "is not applied by oci-systemd"
            log.warning(f"{field} {value!r} ignored: {lsm} {state}")


def _warn_about_capabilities(cid: str, caps: Capabilities | None) -> None:
    """runtime-spec 1.2: unknown or ungrantable capabilities are a warning, and the rest apply."""
    from oci_systemd.runtime import spec

    if caps is None:
        return
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = len(spec.CAPABILITY_NAMES) - 1
    for warning in spec.capability_warnings(caps, last_cap=last):
        log.warning(warning, container_id=cid)


def _log_event(
    event: str, record: Record, status: str, message: str, extra: dict[str, Any] | None = None
) -> None:
    """One lifecycle entry in the journal (the journal module is imported on first use)."""
    from oci_systemd.runtime import journal

    journal.log_event(
        journal.event_named(event),
        container_id=record["id"],
        bundle=record.get("bundle", ""),
        status=status,
        unit=record.get("scope", ""),
        message=message,
        extra=extra,
    )


def _run_record_hooks(stage: str, record: Record, status: Status) -> None:
    """Run a stage's hooks from the record; the hooks module is imported only when there are
    any (most containers have none, and start/delete should not pay for the import)."""
    if not (record.get("hooks") or {}).get(stage):
        return
    from oci_systemd.container import hooks

    hooks.run_stage(stage, record.get("hooks"), Runtime._state_json(record, status))


class Runtime:
    def __init__(self, root: str, *, systemd_cgroup: bool = True) -> None:
        self.store = Store(root)
        self.systemd_cgroup = systemd_cgroup

    # -- create ------------------------------------------------------------------------

    def create(
        self,
        cid: str,
        *,
        bundle: str,
        console_socket: str | None = None,
        pid_file: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
        console_listener: ConsoleListener | None = None,
    ) -> Record:
        """Create a container; returns its record. Leaves nothing behind on failure.

        `console_listener` (a foreground `run`): with process.terminal and no console socket,
        the pty master comes to that listener, bound in the state directory."""
        validate_id(cid)
        plan, record, props = self._prepare(
            cid,
            bundle=bundle,
            console_socket=console_socket,
            no_pivot=no_pivot,
            no_new_keyring=no_new_keyring,
            preserve_fds=preserve_fds,
            relay_terminal=console_listener is not None,
        )
        dirfd = self.store.claim(cid)
        try:
            fault_point("create:claimed")
            if record.get("notify_socket"):
                os.mkdir(os.path.join(self.store.dir(cid), NOTIFY_DIR), 0o755)
            if console_listener is not None and plan["console_socket"] and not console_socket:
                console_listener.bind(plan["console_socket"])
            self.store.write(cid, record)
            self.store.write_config(cid, plan["config"])
            builder = _Builder(self, cid, plan, record, props)
            try:
                builder.build()
            except BaseException as exc:
                builder.abort()
                self.store.remove(cid)
                _log_event("ERROR", record, "stopped", f"create failed: {exc}")
                raise
            record = builder.record
            fault_point("create:built")
            if pid_file:
                _write_pid_file(pid_file, record["pid"])
        finally:
            os.close(dirfd)
        _log_event(
            "CREATED",
            record,
            "created",
            f"Container {cid} created (pid {record['pid']})",
            extra={"OCI_PID": record["pid"]},
        )
        return record

    def _prepare(
        self,
        cid: str,
        *,
        bundle: str,
        console_socket: str | None,
        no_pivot: bool,
        no_new_keyring: bool,
        preserve_fds: int,
        relay_terminal: bool = False,
    ) -> tuple[dict[str, Any], Record, list[Any]]:
        """Everything that can fail on bad input, before anything is created."""

        from oci_systemd.runtime import listen_fds, resources, spec

        bundle = os.path.abspath(bundle)
        _, raw = spec.load(bundle)
        proc = raw.get("process")
        if not proc:
            raise SpecError("process", "required to create a container")
        if console_socket and not proc.get("terminal"):
            raise OciSystemdError("cannot use console socket if runc will not detach or allocate tty")
        if console_socket:
            console_socket = os.path.abspath(console_socket)
        elif proc.get("terminal"):
            if not relay_terminal:
                raise OciSystemdError(
                    "cannot allocate tty if runc will detach without setting console socket",
                    hint="pass --console-socket PATH, or set process.terminal to false",
                )
            # A foreground run relays the pty itself (terminal.py): the idler sends it to us.
            from oci_systemd.runtime.terminal import CONSOLE_SOCKET

            console_socket = os.path.join(self.store.dir(cid), CONSOLE_SOCKET)
        root_path = (raw.get("root") or {}).get("path", "rootfs")
        rootfs = os.path.realpath(os.path.join(bundle, root_path))
        if not os.path.isdir(rootfs):
            raise SpecError("root.path", f"rootfs {rootfs} does not exist or is not a directory")

        linux = raw.get("linux") or {}
        _warn_about_labels(proc, linux)
        _warn_about_capabilities(cid, proc.get("capabilities"))
        unit, slice_ = scope_for(cid, linux.get("cgroupsPath"), systemd_cgroup=self.systemd_cgroup)
        props = list(resources.scope_properties(linux.get("resources"), raw.get("annotations") or {}))
        inherited = listen_fds.inherited_fds(os.environ)
        extra_fds = inherited.count + preserve_fds
        check_passed_fds(extra_fds)
        if inherited.count:
            proc = dict(proc)
            proc["env"] = listen_fds.container_env(
                list(proc.get("env") or []), inherited.count, list(inherited.names)
            )
            raw = {**raw, "process": proc}
        notify = _notify_settings(raw)
        if notify is not None and _needs_notify_mount(raw, notify[1]):
            raw = _with_notify_mount(raw, os.path.join(self.store.dir(cid), NOTIFY_DIR))
        plan: dict[str, Any] = {
            "id": cid,
            "config": raw,
            "bundle": bundle,
            "rootfs": rootfs,
            "notify_socket": os.path.join(self.store.dir(cid), NOTIFY_SOCKET),
            "console_socket": console_socket,
            "no_pivot": no_pivot,
            "no_new_keyring": no_new_keyring,
            "extra_fds": extra_fds,
            "listen_fds": inherited.count,
        }
        record = Record(
            id=cid,
            bundle=bundle,
            rootfs=rootfs,
            pid=0,
            pid_start=0,
            created=rfc3339(),
            owner="",
            annotations=dict(raw.get("annotations") or {}),
            scope=unit,
            slice=slice_,
            phase="creating",
            creator_pid=os.getpid(),
            creator_start=process_start_time(os.getpid()) or 0,
            hooks=dict(raw.get("hooks") or {}),
            oci_version=str(raw.get("ociVersion", "1.2.0")),
            systemd_cgroup=self.systemd_cgroup,
        )
        if notify is not None:
            record["notify_socket"], record["notify_mode"] = notify
        if (linux.get("seccomp") or {}).get("listenerPath"):
            from oci_systemd.runtime import seccomp_notify

            agent = seccomp_notify.listener_of(linux["seccomp"])
            if agent is not None:
                record["seccomp_listener"] = agent
        try:
            import pwd

            record["owner"] = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            record["owner"] = str(os.geteuid())
        return plan, record, props

    # -- start -------------------------------------------------------------------------

    def start(self, cid: str) -> None:
        proxy = self._start(cid)
        if proxy is not None:
            proxy.close()

    def _start(self, cid: str) -> Any:
        """Start; with sd_notify passthrough, returns the proxy still bound (for `run`).

        The lock covers the status check and handing START to the idler, never the wait for
        the exec (startContainer hooks, a frozen scope): kill, delete --force and state must
        not wait behind a start that does not finish."""
        proxy = None
        try:
            with self.store.locked(cid) as record:
                status = self._start_status(record)
                if status is not Status.CREATED:
                    raise _cannot("start", status)
                proxy = self._bind_notify_proxy(cid, record)
                agent = _seccomp_agent(record, record["pid"], Status.CREATED)
                peer = _send_start(self.store.dir(cid), cid)
            _await_started(peer, cid, agent)
            fault_point("start:sent")
            with self.store.locked(cid) as record:  # ContainerNotFoundError: deleted meanwhile
                record["phase"] = "started"
                self.store.write(cid, record)
        except BaseException:
            if proxy is not None:
                proxy.close()
            raise
        fault_point("start:recorded")
        if proxy is not None:
            self._announce_ready(record, proxy)
        _log_event("STARTED", record, "running", f"Container {cid} started")
        try:
            _run_record_hooks("poststart", record, Status.RUNNING)
        except HookError as exc:
            # The spec: a failing poststart hook is logged, the container keeps running.
            log.warning(str(exc))
            _log_event("HOOK_FAILED", record, "running", str(exc))
        return proxy

    def _start_status(self, record: Record) -> Status:
        """start's precondition without a D-Bus round trip: created means the init we recorded
        is alive (pid + start time), still waits on its notify socket, and its cgroup is not
        frozen (a paused created container: runc refuses to start it too). Whatever systemd
        thinks of the scope, a live waiting idler is a created container (and if the scope is
        being stopped, the idler dies with it and start reports that). Only a started
        container asks systemd, to name running or paused in the error."""
        if record.get("phase") == "started":
            return self._status(record)
        return self._exec_status(record)  # the same local checks: init alive, cgroup not frozen

    def _local_status(self, record: Record) -> Status:
        """The status from the record and the init alone, without D-Bus, for a plain kill: a
        live init (pid + start time) is created (its idler still waits on the notify socket)
        or running. Paused reads as running here: only systemd knows, and a signal is queued
        for a frozen process either way."""
        phase = record.get("phase", "creating")
        if phase == "creating" or not pid_alive(record):
            return self._status(record)  # creating or stopped: decided without D-Bus too
        if phase == "started":
            return Status.RUNNING
        return Status.CREATED if self._idler_waiting(record) else Status.RUNNING

    def _exec_status(self, record: Record) -> Status:
        """exec's precondition without D-Bus, as runc decides it: the init alive (pid + start
        time) and the cgroup not frozen. Every ExecSync probe of a pod pays this."""
        from oci_systemd.runtime import cgroups

        status = self._local_status(record)
        if status in (Status.CREATED, Status.RUNNING) and cgroups.frozen(record["pid"]):
            return Status.PAUSED
        return status

    def _idler_waiting(self, record: Record) -> bool:
        """The idler still waits for start: start removes its notify socket when it hands START over."""
        return os.path.exists(os.path.join(self.store.dir(record["id"]), NOTIFY_SOCKET))

    def _bind_notify_proxy(self, cid: str, record: Record) -> Any:
        """Bind the container's notify socket (bind-mounted at /run/notify) before the
        program can run: it may send READY=1 at once."""
        if not record.get("notify_socket"):
            return None
        from oci_systemd.runtime.sdnotify import NotifyProxy

        proxy = NotifyProxy()
        proxy.bind(os.path.join(self.store.dir(cid), NOTIFY_DIR))
        return proxy

    @staticmethod
    def _announce_ready(record: Record, proxy: Any) -> None:
        """Tell the caller's systemd that the service is ready, with MAINPID = the init.

        mode "container": forward what the program sends until its READY=1 (runc's way);
        mode "started": the runtime says READY=1 once the program runs (for programs
        that don't speak sd_notify).
        """
        host = record["notify_socket"]
        try:
            if record.get("notify_mode") == "started":
                proxy.forward(host, {"READY": "1"}, mainpid=record["pid"])
                return
            # Forward until READY=1, but never wait for a program that has already exited.
            while not proxy.run_until_ready(host, record["pid"], timeout=0.25):
                if process_start_time(record["pid"]) != record.get("pid_start"):
                    log.warning("the container exited before it sent READY=1")
                    return
        except OSError as exc:
            log.warning(f"cannot reach NOTIFY_SOCKET {host}: {exc.strerror or exc}")

    # -- state -------------------------------------------------------------------------

    def state(self, cid: str) -> dict[str, Any]:
        with self.store.locked(cid, shared=True) as record:
            return self._state_json(record, self._status(record))

    def _status(self, record: Record, bus: Any = None) -> Status:
        phase = record.get("phase", "creating")
        if phase == "creating":
            return derive_status(record, unit_state=None, alive=False)
        alive = pid_alive(record)
        if not alive:
            # No need to ask systemd: the init is gone, whatever the scope does.
            return Status.STOPPED
        with _maybe_bus(bus) as sd:
            unit_state = sd.active_state(record["scope"])
            frozen = False
            if unit_state == "active":
                frozen = _is_frozen(sd, record["scope"])
        waiting = phase == "created" and self._idler_waiting(record)
        return derive_status(record, unit_state=unit_state, alive=alive, frozen=frozen, waiting=waiting)

    @staticmethod
    def _state_json(record: Record, status: Status) -> dict[str, Any]:
        running = status in (Status.CREATED, Status.RUNNING, Status.PAUSED, Status.CREATING)
        return {
            "ociVersion": record.get("oci_version", "1.2.0"),
            "id": record["id"],
            "pid": record.get("pid", 0) if running else 0,
            "status": status.value,
            "bundle": record.get("bundle", ""),
            "rootfs": record.get("rootfs", ""),
            "created": record.get("created", rfc3339(0)),
            "owner": record.get("owner", ""),
            "annotations": record.get("annotations") or {},
            "systemd-scope": record.get("scope", ""),
        }

    # -- kill --------------------------------------------------------------------------

    def kill(self, cid: str, signal: str, *, all_processes: bool = False) -> None:
        """`kill --all`: Manager.KillUnit on the scope. A plain kill signals the init through a
        pidfd after the pid + start-time check, which is also the whole status check it needs:
        a live init is a created, running or paused container (systemd 252 refuses
        KillUnit(who=main) for scopes), so it does without D-Bus, as `start` does."""
        signum = parse_signal(signal)
        with self.store.locked(cid) as record:
            if all_processes:
                from oci_systemd.runtime.systemd import connect

                with connect() as sd:
                    status = self._status(record, sd)
                    if not status.can_kill() and status is not Status.STOPPED:
                        raise ContainerNotRunningError(cid, status.value)
                    _kill_scope(sd, record, signum, stopped=status is Status.STOPPED)
            else:
                status = self._local_status(record)
                if not status.can_kill():
                    raise ContainerNotRunningError(cid, status.value)
                _signal_init(record, signum)
        _log_event(
            "KILLED",
            record,
            status.value,
            f"Container {cid} sent signal {signum}{' (all processes)' if all_processes else ''}",
            extra={"SIGNAL": signum},
        )

    # -- delete ------------------------------------------------------------------------

    def delete(self, cid: str, *, force: bool = False) -> None:
        try:
            ctx = self.store.locked(cid)
            record = ctx.__enter__()
        except ContainerNotFoundError:
            if force:
                return
            raise
        try:
            from oci_systemd.runtime.systemd import connect

            with connect() as sd:
                status = self._status(record, sd)
                if status not in (Status.STOPPED,) and not force:
                    raise InvalidStateError(
                        f"cannot delete container {cid} that is not stopped", status=status.value
                    )
                _destroy(sd, record)
            fault_point("delete:stopped")
            self.store.remove(cid)
            fault_point("delete:removed")
        finally:
            ctx.__exit__(None, None, None)
        try:
            _run_record_hooks("poststop", record, Status.STOPPED)
        except HookError as exc:
            log.warning(str(exc))
            _log_event("HOOK_FAILED", record, "stopped", str(exc))
        _log_event("DELETED", record, "stopped", f"Container {cid} deleted")

    # -- run ---------------------------------------------------------------------------

    def run(
        self,
        cid: str,
        *,
        bundle: str,
        console_socket: str | None = None,
        pid_file: str | None = None,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
        preserve_fds: int = 0,
        detach: bool = False,
        keep: bool = False,
    ) -> int:
        from oci_systemd.container import linux

        listener = None
        if not detach:
            # The init is a grandchild (the idler forks it); as subreaper we can wait for it.
            linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
            if not console_socket:  # process.terminal: runc's and crun's pty relay
                from oci_systemd.runtime.terminal import ConsoleListener

                listener = ConsoleListener()
        try:
            record = self.create(
                cid,
                bundle=bundle,
                console_socket=console_socket,
                pid_file=pid_file,
                no_pivot=no_pivot,
                no_new_keyring=no_new_keyring,
                preserve_fds=preserve_fds,
                console_listener=listener,
            )
            return self._run_created(record, listener, detach=detach, keep=keep)
        finally:
            if listener is not None:
                listener.close()

    def _run_created(
        self, record: Record, listener: ConsoleListener | None, *, detach: bool, keep: bool
    ) -> int:
        cid = record["id"]
        relay = None
        try:
            if listener is not None and listener.sock is not None:
                relay = listener.relay()  # raw mode and the window size before the program runs
            proxy = self._start(cid)
        except BaseException:
            if relay is not None:
                relay.close()
            if not detach:
                self.delete(cid, force=True)
            raise
        if detach:
            if proxy is not None:
                proxy.close()
            return 0
        forwarder = _forward_notifications(proxy, record) if proxy is not None else None
        try:
            status = _wait_forwarding_signals(record["pid"], relay)
        finally:
            if relay is not None:
                relay.close()  # the caller's terminal back, also on errors
        if forwarder is not None:
            forwarder.join(timeout=1)
            proxy.close()
        _log_event(
            "EXITED",
            record,
            "stopped",
            f"Container {cid} exited with status {status}",
            extra={"EXIT_STATUS": status},
        )
        if not keep:
            self.delete(cid, force=True)
        return status

    # -- list / ps ---------------------------------------------------------------------

    def list_containers(self) -> list[dict[str, Any]]:
        from oci_systemd.runtime.systemd import connect

        out: list[dict[str, Any]] = []
        ids = self.store.ids()
        if not ids:
            return out  # nothing to ask systemd about
        with connect() as sd:
            for cid in ids:
                try:
                    with self.store.locked(cid, shared=True) as record:
                        out.append(self._state_json(record, self._status(record, sd)))
                except ContainerNotFoundError:
                    continue  # deleted while we listed
        return out

    def ps(self, cid: str) -> list[int]:
        with self.store.locked(cid, shared=True) as record:
            from oci_systemd.runtime.systemd import connect

            with connect() as sd:
                status = self._status(record, sd)
                if status is Status.STOPPED:
                    return []
                return sorted(pid for _cg, pid, _cmd in sd.unit_processes(record["scope"]))

    # -- update / pause / resume -------------------------------------------------------

    def update(self, cid: str, resources: dict[str, Any]) -> None:
        """Change resource limits live: the scope's unit properties, via SetUnitProperties."""
        from oci_systemd.runtime import resources as res
        from oci_systemd.runtime import spec
        from oci_systemd.runtime.systemd import connect

        parsed = spec.parse_resources(resources, path="")
        props = res.update_properties(parsed, path="")
        with self.store.locked(cid) as record, connect() as sd:
            status = self._status(record, sd)
            if status not in (Status.CREATED, Status.RUNNING, Status.PAUSED):
                raise ContainerNotRunningError(cid, status.value)
            if props:
                sd.set_unit_properties(record["scope"], props, runtime=True)
        for path in res.unsupported_settings(parsed, path=""):
            log.warning(f"update: {path} has no systemd equivalent and was ignored")
        _log_event(
            "UPDATED",
            record,
            status.value,
            f"Container {cid} resources updated: " + ", ".join(name for name, _sig, _v in props),
        )

    def pause(self, cid: str) -> None:
        self._freeze(cid, freeze=True)

    def resume(self, cid: str) -> None:
        self._freeze(cid, freeze=False)

    def _freeze(self, cid: str, *, freeze: bool) -> None:
        """FreezeUnit/ThawUnit: systemd freezes the scope's cgroup (cgroup.freeze)."""
        from oci_systemd.runtime.systemd import connect

        with self.store.locked(cid) as record, connect() as sd:
            status = self._status(record, sd)
            if freeze and status not in (Status.RUNNING, Status.CREATED):
                raise ContainerNotRunningError(cid, status.value)
            if not freeze and status is not Status.PAUSED:
                raise InvalidStateError(f"container {cid} is not paused", status=status.value)
            if freeze:
                sd.freeze_unit(record["scope"])
            else:
                sd.thaw_unit(record["scope"])
        word = "paused" if freeze else "resumed"
        _log_event(word.upper(), record, "paused" if freeze else "running", f"Container {cid} {word}")

    # -- events ------------------------------------------------------------------------

    def stats(self, cid: str) -> dict[str, Any]:
        from oci_systemd.runtime import cgroups

        with self.store.locked(cid, shared=True) as record:
            status = self._status(record)
            if status is Status.STOPPED:
                raise ContainerNotRunningError(cid, status.value)
            return {"type": "stats", "id": cid, "data": cgroups.stats(record["pid"])}

    def events(self, cid: str, *, interval: float, stats_only: bool, emit: Any) -> None:
        """runc's `events`: stats every interval, an `oom` event when systemd reports one,
        until the container stops. Unit changes arrive as D-Bus signals (dbus-next)."""
        import asyncio

        from oci_systemd.runtime.systemd import watch_unit

        first = self.stats(cid)
        emit(first)
        if stats_only:
            return
        with self.store.locked(cid, shared=True) as record:
            scope = record["scope"]

        async def loop() -> None:
            async for change in watch_unit(scope, interval=interval):
                if change is None:
                    try:
                        emit(self.stats(cid))
                    except ContainerNotRunningError:
                        return
                    continue
                if change.get("Result") == "oom-kill":
                    emit({"type": "oom", "id": cid})
                if change.get("ActiveState") in ("inactive", "failed"):
                    return

        asyncio.run(loop())

    # -- exec --------------------------------------------------------------------------

    def exec(
        self,
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
        relayed to the caller's terminal, as `runc exec -t` does (terminal.py)."""
        if not process.get("terminal") or console_socket or detach:
            return self._exec(cid, process, detach, pid_file, console_socket, preserve_fds, None)
        from oci_systemd.runtime.terminal import ConsoleListener

        listener = ConsoleListener()
        try:
            return self._exec(cid, process, detach, pid_file, console_socket, preserve_fds, listener)
        finally:
            listener.close()

    def _exec(
        self,
        cid: str,
        process: dict[str, Any],
        detach: bool,
        pid_file: str | None,
        console_socket: str | None,
        preserve_fds: int,
        console_listener: ConsoleListener | None,
    ) -> int:
        from oci_systemd.container import channel
        from oci_systemd.container.channel import RemoteError
        from oci_systemd.runtime import cgroups, spec

        check_passed_fds(preserve_fds)
        _warn_about_capabilities(cid, spec.parse_process(process).get("capabilities"))
        with self.store.locked(cid, shared=True) as record:
            status = self._exec_status(record)
            if status is Status.PAUSED:
                raise InvalidStateError("cannot exec in a paused container", status=status.value)
            if status not in (Status.CREATED, Status.RUNNING):
                raise ContainerNotRunningError(cid, status.value)
            config = self.store.read_config(cid)
        if process.get("terminal") and not console_socket:
            if console_listener is None:  # runc's words: only a detached exec comes here
                raise OciSystemdError(
                    "cannot allocate tty if runc will detach without setting console socket",
                    hint="pass --console-socket PATH, or leave out --detach",
                )
            from oci_systemd.runtime.terminal import exec_console_path

            console_socket = exec_console_path(self.store.dir(cid))
            console_listener.bind(console_socket)
        linux_cfg = config.get("linux") or {}
        plan: dict[str, Any] = {
            "exec": True,
            "id": cid,
            "target_pid": record["pid"],
            "config": {
                "process": process,
                "linux": {k: linux_cfg[k] for k in ("seccomp", "personality") if k in linux_cfg},
            },
            "console_socket": os.path.abspath(console_socket) if console_socket else None,
            "extra_fds": preserve_fds,
            "listen_fds": 0,
        }
        if not detach:  # ctypes (linux) costs ~1.5 ms: only when we wait for the process
            from oci_systemd.container import linux

            linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        try:
            fork = _may_fork_exec_helper(config, process, self.store.dir(cid))
        except FileNotFoundError:
            raise ContainerNotFoundError(cid) from None  # deleted since the check above
        if fork:
            chan, idler = _fork_exec_helper(plan, preserve_fds)
        else:
            chan, idler = spawn_idler(preserve_fds)
            chan.send(channel.PLAN, **plan)
        child = 0
        try:
            # The helper first, as runc does with `runc init`: the move costs an RCU grace
            # period (~10-20 ms) that now overlaps the helper's setns, and the process it forks
            # is born in the container's cgroup. If the fork won the race, it is moved after.
            try:
                cgroups.join(idler, record["pid"])
            except SyscallError:
                pass  # the helper died: its report (or EOF) below says why
            child = int(chan.recv(channel.PID)["pid"])
            os.waitpid(idler, 0)
            if cgroups.cgroup_of(child) != cgroups.cgroup_of(record["pid"]):
                cgroups.join(child, record["pid"])
            chan.send(channel.START)
            try:
                await_exec(chan, _seccomp_agent(record, child, Status.RUNNING))
            except channel.ChannelClosed:
                raise IdlerError("the process died before it could exec") from None
        except RemoteError as exc:
            _reap_quietly(child or idler)
            raise _idler_failure(exc) from None
        except BaseException:
            for pid in (child, idler):
                if pid:
                    try:
                        os.kill(pid, _signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    _reap_quietly(pid)
            raise
        finally:
            chan.close()
        _log_event(
            "EXEC",
            record,
            "running",
            f"Process {child} exec'd in container {cid}",
            extra={"COMMAND": " ".join(process.get("args") or []), "EXEC_PID": child},
        )
        if pid_file:
            _write_pid_file(pid_file, child)
        if detach:
            return 0
        if console_listener is None:
            return _wait_forwarding_signals(child)
        relay = _exec_relay(console_listener, child)
        try:
            return _wait_forwarding_signals(child, relay)
        finally:
            relay.close()  # the caller's terminal back, also on errors


# -- create's steps ----------------------------------------------------------------------


class _Builder:
    """The steps of one create, with what must be undone if a later step fails."""

    def __init__(
        self, runtime: Runtime, cid: str, plan: dict[str, Any], record: Record, props: list[Any]
    ) -> None:
        self.runtime = runtime
        self.cid = cid
        self.plan = plan
        self.record = record
        self.props = props
        self.idler_pid = 0
        self.init_pid = 0
        self.scope_started = False
        self.forwarder_pid = 0
        self.chan: Channel | None = None
        self.bus: Any = None  # systemd.Systemd, connected early by build()

    def build(self) -> None:
        from oci_systemd.container import channel, hooks

        chan = self.chan = self._spawn_idler()
        fault_point("create:spawned")
        chan.send(channel.PLAN, **self.plan)
        # The scope first, with the idler in it, while the idler's interpreter starts: the
        # scope's job mostly waits for the kernel (moving a process between cgroups waits for
        # an RCU grace period, ~10 ms here), and the two waits overlap. The idler makes its
        # namespaces and forks the init only after JOINED, so the init is born in the scope.
        self._connect_bus()
        try:
            self._start_scope()
            fault_point("create:scoped")
            self._enter_leaf_cgroup()
        except OciSystemdError as exc:
            # An idler that failed at once (its error is on the channel) leaves the scope
            # empty or its process gone: its own report says why, these errors would not.
            raise self._idler_error() or exc from None
        self._send(channel.JOINED)
        msg = self._recv(channel.USERNS, channel.PID)
        if msg["type"] == channel.USERNS:
            self._write_id_maps(int(msg["pid"]))
            chan.send(channel.MAPPED)
            msg = self._recv(channel.PID)
        self.init_pid = int(msg["pid"])
        start = process_start_time(self.init_pid)
        if start is None:
            raise IdlerError("the container's init exited before its scope was created")
        self.record["pid"] = self.init_pid
        self.record["pid_start"] = start
        self.runtime.store.write(self.cid, self.record)
        fault_point("create:pid")
        self._reap_idler_if_forked()
        self._setup_network()
        state = Runtime._state_json(self.record, Status.CREATING)
        hooks.run_stage("prestart", self.plan["config"].get("hooks"), state)
        hooks.run_stage("createRuntime", self.plan["config"].get("hooks"), state)
        self._send(channel.SCOPED)
        self._close_bus()
        self._recv(channel.CREATED)
        chan.close()
        self.record["phase"] = "created"
        self.runtime.store.write(self.cid, self.record)

    def _recv(self, *kinds: str) -> dict[str, Any]:
        from oci_systemd.container import channel
        from oci_systemd.container.channel import RemoteError

        assert self.chan is not None
        try:
            return self.chan.recv(*kinds)
        except RemoteError as exc:
            raise _idler_failure(exc, creating=True) from None
        except channel.ChannelClosed:
            raise IdlerError("the idler exited unexpectedly while creating the container") from None

    def _send(self, kind: str) -> None:
        """Send to the idler; if it is gone, raise the error it reported before dying."""
        assert self.chan is not None
        try:
            self.chan.send(kind)
        except OSError:
            raise self._idler_error() or IdlerError(
                "the idler exited unexpectedly while creating the container"
            ) from None

    def _idler_error(self) -> OciSystemdError | None:
        """The error the idler sent before it died, if any is waiting on the channel (it died
        before JOINED: a console socket that can't be reached, say)."""
        import select

        from oci_systemd.container import channel
        from oci_systemd.container.channel import RemoteError

        assert self.chan is not None
        if not select.select([self.chan.fileno()], [], [], 0.1)[0]:
            return None
        try:
            self.chan.recv()
        except RemoteError as exc:
            return _idler_failure(exc, creating=True)
        except (channel.ChannelClosed, ValueError, OSError):
            pass  # EOF or noise without a report: the caller's own error is the best we have
        return None

    def _spawn_idler(self) -> Channel:
        stdio = self._start_log_forwarder()
        try:
            chan, self.idler_pid = spawn_idler(int(self.plan["extra_fds"]), stdio)
        finally:
            if stdio is not None:
                os.close(stdio[0])
                os.close(stdio[1])
        return chan

    def _start_log_forwarder(self) -> tuple[int, int] | None:
        """With the annotation io.github.oci-systemd.log=journald, the container's stdout and
        stderr become journal entries (SYSLOG_IDENTIFIER and CONTAINER_ID = the id,
        OBJECT_SYSTEMD_UNIT = the scope) through a small forwarder that lives in the scope."""
        annotations = self.plan["config"].get("annotations") or {}
        target = annotations.get(LOG_ANNOTATION)
        if target is None:
            return None
        if target != "journald":
            raise SpecError(f'annotations["{LOG_ANNOTATION}"]', f"expected journald, got {target!r}")
        if (self.plan["config"].get("process") or {}).get("terminal"):
            raise SpecError(
                f'annotations["{LOG_ANNOTATION}"]', "a terminal's output goes to the console socket"
            )
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        argv = _minimal_python(
            "oci_systemd.runtime.journal",
            "run_forwarder",
            "sys.argv[1:]",
            "3",
            "4",
            self.cid,
            self.record["scope"],
        )
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(out_r, 3, inheritable=True)
                os.dup2(err_r, 4, inheritable=True)
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.closerange(5, 65536)
                os.execv(sys.executable, argv)
            finally:
                os._exit(127)
        os.close(out_r)
        os.close(err_r)
        self.forwarder_pid = pid
        return out_w, err_w

    def _reap_idler_if_forked(self) -> None:
        if self.idler_pid and self.idler_pid != self.init_pid:
            os.waitpid(self.idler_pid, 0)
            self.idler_pid = 0

    def _write_id_maps(self, pid: int) -> None:
        from oci_systemd.container import namespaces

        linux = self.plan["config"].get("linux") or {}
        namespaces.write_id_maps(pid, linux.get("uidMappings") or [], linux.get("gidMappings") or [])

    def _connect_bus(self) -> None:
        from oci_systemd.runtime.systemd import Systemd

        self.bus = Systemd()

    def _close_bus(self) -> None:
        if self.bus is not None:
            self.bus.close()
            self.bus = None

    def _start_scope(self) -> None:
        props = [
            ("Description", "s", f"oci-systemd container {self.cid}"),
            ("Slice", "s", self.record["slice"]),
            *_SCOPE_BASE,
            ("PIDs", "au", [self.idler_pid, *([self.forwarder_pid] if self.forwarder_pid else [])]),
            *self.props,
        ]
        assert self.bus is not None, "build() connects before the scope is started"
        self.bus.start_transient_scope(self.record["scope"], props)
        self.scope_started = True

    def _enter_leaf_cgroup(self) -> None:
        """Move the idler into `<scope>/container` (its init is born there): with Delegate=yes,
        controllers can only be enabled for a cgroup without processes (systemd#26311), so
        they live in a leaf."""
        from oci_systemd.runtime import cgroups

        cgroups.enter_leaf(self.idler_pid)
        if self.forwarder_pid:
            cgroups.enter_leaf(self.forwarder_pid, "log")

    def _setup_network(self) -> None:
        linux = self.plan["config"].get("linux") or {}
        devices = linux.get("netDevices") or {}
        if devices:
            from oci_systemd.runtime import network

            network.move_devices(self.init_pid, devices)

    def abort(self) -> None:
        """Undo a failed create: no process, no scope, nothing of ours left."""
        for pid in (self.init_pid, self.idler_pid, self.forwarder_pid):
            if pid:
                try:
                    os.kill(pid, _signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.idler_pid:
            try:
                os.waitpid(self.idler_pid, 0)
            except ChildProcessError:
                pass
        if self.chan is not None:
            self.chan.close()
        try:
            if self.scope_started:
                if self.bus is None:
                    self._connect_bus()
                _destroy(self.bus, self.record)
        except OciSystemdError as exc:
            log.warning(f"cleanup of scope {self.record['scope']} failed: {exc}")
        finally:
            self._close_bus()


# -- helpers -----------------------------------------------------------------------------


def _idler_failure(exc: RemoteError, *, creating: bool = False) -> OciSystemdError:
    """The runtime's error for an idler's `error` message: the idler's own exception class
    (SpecError, HookError, ExecFailedError, ...) with its message and attributes; an OSError or
    anything unexpected in the idler is an IdlerError. `create` exits 1 for every failure, a
    missing program included (as runc); only start and exec exit 126/127."""
    from oci_systemd.errors import ExecFailedError, from_report

    error = from_report(exc.kind, exc.message, exc.attrs) or IdlerError(exc.message)
    if creating and isinstance(error, ExecFailedError):
        error.exit_code = 1
    return error


def check_passed_fds(count: int) -> None:
    """fds 3..3+count-1 (LISTEN_FDS, then --preserve-fds) must be the caller's: open, and not
    close-on-exec. Everything this runtime opens itself is close-on-exec (O_CLOEXEC; the log
    file, the state directory's locked fd, the bus), so a close-on-exec fd in the range is one
    of ours and is never handed to the container (the locked state directory fd would make
    every later command on the id wait for the container); a hole is refused as runc does."""
    for fd in range(3, 3 + count):
        try:
            inheritable = os.get_inheritable(fd)
        except OSError:
            raise OciSystemdError(
                f"unable to stat preserved-fd {fd - 3} (of {count}): fd {fd} is not open",
                hint="--preserve-fds N passes fds 3..N+2, which must all be open",
            ) from None
        if not inheritable:
            raise OciSystemdError(
                f"preserved-fd {fd - 3} (fd {fd}) was not passed by the caller",
                hint="--preserve-fds N passes fds 3..N+2, which must all be open",
            )


def _minimal_python(module: str, function: str, call_args: str, *args: str) -> list[str]:
    """argv for `python -I -S` (no site, no environment: fast and with little memory) running
    `module.function(call_args)`, with this package importable and `args` in sys.argv[1:]."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (
        f"import sys; sys.path.insert(0, {pkg_parent!r}); "
        f"from {module} import {function}; {function}({call_args})"
    )
    return [sys.executable, "-I", "-S", "-c", code, *args]


def spawn_idler(extra_fds: int, stdio: tuple[int, int] | None = None) -> tuple[Channel, int]:
    """fork + exec `python -I -S` on the idler module with one channel fd; (channel, pid).

    fds 3..3+extra_fds-1 (LISTEN_FDS, --preserve-fds) are inherited; the channel sits
    above them. Everything else we hold is close-on-exec.
    """
    from oci_systemd.container.channel import Channel

    ours, theirs = Channel.pair()
    child_fd = theirs.fileno()
    target = 3 + extra_fds + 16
    argv = _minimal_python("oci_systemd.container.idler", "main", "", str(target))
    pid = os.fork()
    if pid == 0:  # child: nothing but fd shuffling until exec
        try:
            os.dup2(child_fd, target, inheritable=True)
            if stdio is not None:  # the container's stdout/stderr go to the journal forwarder
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(stdio[0], 1)
                os.dup2(stdio[1], 2)
            for fd in range(3, 3 + extra_fds):
                os.set_inheritable(fd, True)
            # The idler's /proc/<pid>/exe on a read-only mount (CVE-2019-5736, interpreter.py)
            from oci_systemd.runtime.interpreter import read_only_fd

            exe = read_only_fd()
            if exe >= 0:
                try:
                    os.execve(exe, argv, os.environ)
                except OSError:
                    pass
            os.execv(sys.executable, argv)
        finally:
            os._exit(127)
    theirs.close()
    return ours, pid


# Left in the state directory by an exec whose process may hold CAP_SYS_PTRACE: from then on
# every exec runs its helper from the read-only interpreter (see _may_fork_exec_helper).
PTRACE_EXEC_MARK = "ptrace-exec"


def _may_ptrace(process: dict[str, Any]) -> bool:
    """Whether `process` may hold CAP_SYS_PTRACE: in its bounding set, or no capabilities
    given at all (then the bounding set is not reduced)."""
    caps = process.get("capabilities")
    return caps is None or "CAP_SYS_PTRACE" in (caps.get("bounding") or ())


def _may_fork_exec_helper(config: dict[str, Any], process: dict[str, Any], state_dir: str) -> bool:
    """Whether exec's helper may be a fork of this runtime (fast) rather than an interpreter
    started from a read-only mount of it (`spawn_idler`, interpreter.py).

    A forked helper's process in the container runs with `/proc/<pid>/exe` leading to the
    host's writable interpreter until it execs: a container process that may ptrace it could
    keep that fd and reopen it for writing later (CVE-2019-5736). Non-dumpable, it is out of
    reach unless the attacker has CAP_SYS_PTRACE in the user namespace that owns its memory:
    the host's. So the fork is safe when the container has a user namespace of its own, or
    when neither its init nor any process exec'd into it so far may hold CAP_SYS_PTRACE (the
    bounding set is inherited and can only shrink)."""
    namespaces = (config.get("linux") or {}).get("namespaces") or ()
    if any(ns.get("type") == "user" for ns in namespaces):
        return True
    mark = os.path.join(state_dir, PTRACE_EXEC_MARK)
    if _may_ptrace(process):
        # Remembered before this process exists, for every later exec (the state directory
        # is root's; delete removes it).
        os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        return False
    return not _may_ptrace(config.get("process") or {}) and not os.path.lexists(mark)


def _fork_exec_helper(plan: dict[str, Any], extra_fds: int) -> tuple[Channel, int]:
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


class _maybe_bus:  # lower case: used like the context manager function it replaced
    """`with _maybe_bus(bus) as sd`: the caller's connection, or a new one closed at the end.
    (A class: contextlib would cost every short command its import.)"""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.own: Any = None

    def __enter__(self) -> Any:
        if self.bus is not None:
            return self.bus
        from oci_systemd.runtime.systemd import Systemd

        self.own = Systemd()
        return self.own

    def __exit__(self, *exc: object) -> None:
        if self.own is not None:
            self.own.close()


def _is_frozen(sd: Any, scope: str) -> bool:
    try:
        props = sd.unit_properties(scope, "org.freedesktop.systemd1.Unit", ["FreezerState"])
    except OciSystemdError:
        return False
    state = props.get("FreezerState", b"running")
    return (state.decode() if isinstance(state, bytes) else str(state)) in ("frozen", "freezing")


def _cannot(op: str, status: Status) -> InvalidStateError:
    if status is Status.STOPPED:
        return InvalidStateError(f"cannot {op} a container that has stopped", status=status.value)
    if status is Status.RUNNING:
        return InvalidStateError(f"cannot {op} an already running container", status=status.value)
    return InvalidStateError(f"cannot {op} a container in the {status.value} state", status=status.value)


def await_exec(peer: Channel, seccomp_agent: Callable[[int], None] | None = None) -> None:
    """The idler announces EXEC just before execve(); its socket is close-on-exec, so EOF after
    the announcement means the program runs, an error message means exec failed, and EOF
    before it means the idler died (ChannelClosed). Before EXEC, a filter with SCMP_ACT_NOTIFY
    sends its notify fd, for `seccomp_agent` (seccomp_notify.py)."""
    from oci_systemd.container import channel

    msg, fds = peer.recv_with_fds(channel.EXEC, channel.SECCOMP)
    if msg["type"] == channel.SECCOMP:
        _hand_to_agent(peer, fds, seccomp_agent)
        peer.recv(channel.EXEC)
    try:
        peer.recv()
    except channel.ChannelClosed:
        return
    raise IdlerError("unexpected answer from the idler")


def _hand_to_agent(peer: Channel, fds: list[int], agent: Callable[[int], None] | None) -> None:
    """Give the notify fd to the seccomp agent, then let the idler go on; if that fails, the
    idler is told so (it exits) and start fails, as the spec asks."""
    from oci_systemd.container import channel

    try:
        if agent is None or len(fds) != 1:
            raise IdlerError("the idler sent a seccomp notify fd that nobody asked for")
        agent(fds[0])
    except BaseException as exc:
        try:
            peer.send_error(str(exc), kind="seccomp")
        except OSError:
            pass
        raise
    finally:
        for fd in fds:
            os.close(fd)
    peer.send(channel.SECCOMP_SENT)


def _seccomp_agent(record: Record, pid: int, status: Status) -> Callable[[int], None] | None:
    """What sends the notify fd of process `pid` to the record's listenerPath; None without one."""
    listener = record.get("seccomp_listener")
    if not listener:
        return None
    from oci_systemd.runtime import seccomp_notify

    state = Runtime._state_json(record, status)
    return lambda fd: seccomp_notify.send_state(listener, pid, state, fd)


# Connecting and handing START over happen under the container's lock: bounded. (A unix
# socket's connect() blocks while the listener's backlog is full, e.g. a frozen idler.)
START_CONNECT_TIMEOUT = 5.0


def _send_start(state_dir: str, cid: str) -> Channel:
    """Connect to the idler's start socket, send START and remove the socket's name (the idler
    holds no fd of the state directory, so the host side does it): from here on `state`
    reads running. Returns the connection for `_await_started`."""
    from oci_systemd.container import channel
    from oci_systemd.container.channel import Channel

    path = os.path.join(state_dir, NOTIFY_SOCKET)
    try:
        sock = channel.connect_unix(path, timeout=START_CONNECT_TIMEOUT)
    except OSError as exc:
        raise ContainerNotRunningError(cid) from exc
    peer = Channel(sock)
    try:
        peer.send(channel.START)
    except OSError as exc:  # the idler died under us (killed, scope stopped)
        peer.close()
        raise ContainerNotRunningError(cid) from exc
    sock.settimeout(None)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return peer


def _await_started(peer: Channel, cid: str, seccomp_agent: Callable[[int], None] | None) -> None:
    """EOF on the idler's close-on-exec socket after EXEC means the exec succeeded."""
    from oci_systemd.container import channel
    from oci_systemd.container.channel import RemoteError

    try:
        await_exec(peer, seccomp_agent)
        return
    except (channel.ChannelClosed, OSError) as exc:  # the idler died under us (killed, scope stopped)
        raise ContainerNotRunningError(cid) from exc
    except RemoteError as exc:
        raise _idler_failure(exc) from None
    finally:
        peer.close()


def _signal_init(record: Record, signum: int) -> None:
    """Signal the container's init (the spec's target for a plain kill).

    A pidfd pins the process we checked (pid + start time), so a recycled pid can never
    receive the signal. os.pidfd_open and _signal.pidfd_send_signal, not linux.py's: ctypes
    would cost kill ~1.5 ms of imports.
    """
    pid = record["pid"]
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise ContainerNotRunningError(record["id"]) from None
    except OSError as exc:
        raise SyscallError.from_oserror("pidfd_open", exc) from exc
    try:
        if process_start_time(pid) != record.get("pid_start"):
            raise ContainerNotRunningError(record["id"])
        try:
            _signal.pidfd_send_signal(pidfd, signum)
        except ProcessLookupError:  # exited (a zombie) since the check
            raise ContainerNotRunningError(record["id"]) from None
        except OSError as exc:
            raise SyscallError.from_oserror("pidfd_send_signal", exc) from exc
    finally:
        os.close(pidfd)


def _kill_scope(sd: Any, record: Record, signum: int, *, stopped: bool) -> None:
    """KillUnit(all) on the scope. runc's `kill --all` of a stopped container whose cgroup is
    gone succeeds, and containerd's CRI relies on it: it sends `kill --all <id> 9` while it
    cleans up an exited task and retries that forever on failure. A scope systemd has already
    collected (its init exited, or the init exits now, between the check and the call) is that
    case: nothing is left to signal."""
    from oci_systemd.runtime.systemd import NoSuchUnit

    if stopped and sd.active_state(record["scope"]) in (None, "inactive", "failed"):
        return
    try:
        sd.kill_unit(record["scope"], signum, who="all")
    except NoSuchUnit:
        if pid_alive(record):
            raise


def _destroy(sd: Any, record: Record) -> None:
    """Kill everything in the scope, stop it, and make sure systemd forgets it."""
    scope = record.get("scope", "")
    state = sd.active_state(scope) if scope else None
    if state is not None:  # None: systemd has no such unit (stopped and collected), nothing to reset
        if state in ("active", "activating", "reloading", "deactivating"):
            try:
                sd.thaw_unit(scope)
            except OciSystemdError:
                pass
            try:
                sd.kill_unit(scope, _signal.SIGKILL, who="all")
            except OciSystemdError:
                pass
            fault_point("delete:killed")
            sd.stop_unit(scope)
        sd.reset_failed(scope)
    # A create that died before its scope existed leaves an init outside any scope.
    if pid_alive(record):
        try:
            os.kill(record["pid"], _signal.SIGKILL)
        except ProcessLookupError:
            pass


NOTIFY_DIR = "notify"
LOG_ANNOTATION = "io.github.oci-systemd.log"
NOTIFY_MODE_ANNOTATION = "io.github.oci-systemd.notify"


def _notify_settings(raw: dict[str, Any]) -> tuple[str, str] | None:
    """(host NOTIFY_SOCKET, mode) when our caller wants sd_notify, else None."""
    host = os.environ.get("NOTIFY_SOCKET", "")
    if not host:
        return None
    mode = (raw.get("annotations") or {}).get(NOTIFY_MODE_ANNOTATION) or os.environ.get(
        "OCI_SYSTEMD_NOTIFY", "container"
    )
    if mode not in ("container", "started"):
        raise SpecError(
            f'annotations["{NOTIFY_MODE_ANNOTATION}"]', f"expected container or started, got {mode!r}"
        )
    return host, mode


def _needs_notify_mount(raw: dict[str, Any], mode: str) -> bool:
    """Whether the container gets our notify socket (a bind mount at /run/notify).

    Without a mount namespace nothing can be mounted for it (it would be mounted in the
    caller's namespace): with `started` the runtime says READY=1 itself and the container
    needs no socket; with `container` nobody could say it, so that is refused."""
    if any(ns.get("type") == "mount" for ns in (raw.get("linux") or {}).get("namespaces") or ()):
        return True
    if mode == "started":
        return False
    raise SpecError(
        "linux.namespaces",
        "sd_notify passthrough to the container (NOTIFY_SOCKET) needs a mount namespace; "
        "add one, or let the runtime report READY=1 itself (OCI_SYSTEMD_NOTIFY=started)",
    )


def _with_notify_mount(raw: dict[str, Any], host_dir: str) -> dict[str, Any]:
    """Bind our notify directory at /run/notify and point NOTIFY_SOCKET there (as runc).

    Read-only: the directory is on the host (often its /run tmpfs), so a writable one would
    let the container's root plant files, setuid binaries, devices or deep trees there.
    Sending to the socket needs only its mode, not a writable mount."""
    from oci_systemd.runtime.sdnotify import CONTAINER_DIRECTORY, CONTAINER_NOTIFY_SOCKET

    proc = dict(raw["process"])
    env = [e for e in proc.get("env") or [] if not e.startswith("NOTIFY_SOCKET=")]
    proc["env"] = [*env, f"NOTIFY_SOCKET={CONTAINER_NOTIFY_SOCKET}"]
    mounts = [
        *(raw.get("mounts") or []),
        {
            "destination": CONTAINER_DIRECTORY,
            "type": "bind",
            "source": host_dir,
            "options": ["bind", "ro", "nosuid", "nodev", "noexec"],
        },
    ]
    return {**raw, "process": proc, "mounts": mounts}


def _forward_notifications(proxy: Any, record: Record) -> Any:
    """`run` in the foreground: keep relaying STATUS=, WATCHDOG=1, ... until the init exits."""
    import threading

    from oci_systemd.container import linux

    try:
        pidfd = linux.pidfd_open(record["pid"])
    except SyscallError:
        return None

    def relay() -> None:
        try:
            proxy.forward_forever(record["notify_socket"], record["pid"], pidfd)
        finally:
            os.close(pidfd)

    thread = threading.Thread(target=relay, name="sd-notify-relay", daemon=True)
    thread.start()
    return thread


def _reap_quietly(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_pid_file(path: str, pid: int) -> None:
    """Write `path` atomically without following a symlink: the pid file's directory may be
    writable by someone else (an engine's per-container directory, a user's), who could plant
    a symlink under any name we pick. The temporary file is created O_EXCL|O_NOFOLLOW next to
    it, relative to a directory fd (so its parent cannot be swapped between the steps), and
    renamed over `path` (rename replaces a symlink there, it never writes through it)."""
    parent, name = os.path.split(os.path.abspath(path))
    try:
        dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SyscallError.from_oserror("write pid file", exc) from exc
    try:
        tmp = f".{name}.{os.urandom(8).hex()}.tmp"  # O_EXCL: a planted name fails, never follows
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dirfd
        )
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
        try:
            os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except OSError:
            os.unlink(tmp, dir_fd=dirfd)
            raise
    except OSError as exc:
        raise SyscallError.from_oserror("write pid file", exc) from exc
    finally:
        os.close(dirfd)


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
        _reap_quietly(child)
        raise


def _wait_forwarding_signals(pid: int, relay: Relay | None = None) -> int:
    """Wait for the container's init like `runc run`: forward signals, return its status.

    With a terminal `relay`, the pty is relayed until the init exits, and SIGWINCH resizes the
    pty instead of being forwarded (the kernel signals the container's foreground group)."""
    forwarded = (
        _signal.SIGTERM,
        _signal.SIGINT,
        _signal.SIGHUP,
        _signal.SIGQUIT,
        _signal.SIGUSR1,
        _signal.SIGUSR2,
        _signal.SIGWINCH,
    )

    def forward(signum: int, _frame: Any) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in forwarded:
        _signal.signal(sig, forward)
    if relay is not None:
        _signal.signal(_signal.SIGWINCH, lambda _signum, _frame: relay.resize())
        relay.run(pid)
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0  # already reaped elsewhere; nothing to report
        except InterruptedError:
            continue
        if got == pid:
            break
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return 1
