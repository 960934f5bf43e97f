# SPDX-License-Identifier: Apache-2.0
"""`create`: validate the bundle, claim the id, and build the container around a waiting
idler (create_steps.py). Everything that can fail on bad input fails in `prepare`, before
anything exists; whatever fails later is undone: no unit, no state, no process is left."""

from __future__ import annotations

import os

from oci_systemd.errors import ExecFailedError, OciSystemdError, SpecError
from oci_systemd.runtime.log import rfc3339
from oci_systemd.runtime.notify_passthrough import NOTIFY_DIR
from oci_systemd.runtime.state import START_SOCKET, Record, process_start_time, validate_id
from oci_systemd.runtime.transitions import fault_point, log_event
from oci_systemd.runtime.verbs.create_steps import CreateSteps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.container.protocol import CreatePlan
    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.placement import Placement
    from oci_systemd.runtime.systemd import UnitProperty
    from oci_systemd.runtime.terminal import ConsoleListener


def create(
    rt: Runtime,
    cid: str,
    *,
    bundle: str,
    console_socket: str | None = None,
    pid_file: str | None = None,
    no_pivot: bool = False,
    no_new_keyring: bool = False,
    preserve_fds: int = 0,
    console_listener: ConsoleListener | None = None,
    placement: Placement | None = None,
) -> Record:
    """Create a container; returns its record. Leaves nothing behind on failure.

    `placement`: the unit mode's `run` passes the one it chose (choose_placement(run=True)).

    `console_listener` (a foreground `run`): with process.terminal and no console socket,
    the pty master comes to that listener, bound in the state directory."""
    from oci_systemd.runtime import rootless

    rootless.check_flag(rt.rootless_flag)
    validate_id(cid)
    placement, plan, record, props = prepare(
        rt,
        cid,
        bundle=bundle,
        console_socket=console_socket,
        no_pivot=no_pivot,
        no_new_keyring=no_new_keyring,
        preserve_fds=preserve_fds,
        relay_terminal=console_listener is not None,
        placement=placement,
    )
    dirfd = rt.store.claim(cid)
    try:
        fault_point("create:claimed")
        if record.get("notify_socket"):
            os.mkdir(os.path.join(rt.store.dir(cid), NOTIFY_DIR), 0o755)
        if console_listener is not None and plan["console_socket"] and not console_socket:
            console_listener.bind(plan["console_socket"])
        rt.store.write(cid, record)
        rt.store.write_config(cid, plan["config"])
        steps = CreateSteps(
            store=rt.store, manager=rt.manager, placement=placement, plan=plan, record=record, props=props
        )
        try:
            steps.build()
        except BaseException as exc:
            steps.abort()
            rt.store.remove(cid)
            log_event("ERROR", record, "stopped", f"create failed: {exc}")
            if isinstance(exc, ExecFailedError):
                # The idler's check of the program: create exits 1 for every failure, a
                # missing program included (as runc); only start and exec exit 126/127.
                exc.exit_code = 1
            raise
        record = steps.record
        fault_point("create:built")
        if pid_file:
            from oci_systemd.runtime.pid_file import write_pid_file

            write_pid_file(pid_file, record["pid"])
    finally:
        os.close(dirfd)
    log_event(
        "CREATED",
        record,
        "created",
        f"Container {cid} created (pid {record['pid']})",
        extra={"OCI_PID": record["pid"]},
    )
    return record


def prepare(
    rt: Runtime,
    cid: str,
    *,
    bundle: str,
    console_socket: str | None,
    no_pivot: bool,
    no_new_keyring: bool,
    preserve_fds: int,
    relay_terminal: bool = False,
    placement: Placement | None = None,
) -> tuple[Placement, CreatePlan, Record, list[UnitProperty]]:
    """Everything that can fail on bad input, before anything is created."""

    from oci_systemd.runtime import listen_fds, notify_passthrough, resources, spec
    from oci_systemd.runtime.config_warnings import warn_about_capabilities, warn_about_labels
    from oci_systemd.runtime.placement import choose_placement

    bundle = os.path.abspath(bundle)
    raw = spec.load(bundle)
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

        console_socket = os.path.join(rt.store.dir(cid), CONSOLE_SOCKET)
    root_path = (raw.get("root") or {}).get("path", "rootfs")
    rootfs = os.path.realpath(os.path.join(bundle, root_path))
    if not os.path.isdir(rootfs):
        raise SpecError("root.path", f"rootfs {rootfs} does not exist or is not a directory")

    linux = raw.get("linux") or {}
    if os.geteuid() != 0:  # root of a user namespace (rootless podman's) maps what it has
        from oci_systemd.runtime import rootless_policy

        rootless_policy.check_config(raw)
    warn_about_labels(proc, linux)
    warn_about_capabilities(cid, proc.get("capabilities"))
    placement = placement or choose_placement()
    unit, slice_ = placement.unit_for(cid, linux.get("cgroupsPath"))
    props = list(resources.scope_properties(linux.get("resources"), raw.get("annotations") or {}))
    inherited = listen_fds.inherited_fds(os.environ)
    extra_fds = inherited.count + preserve_fds
    listen_fds.check_passed_fds(extra_fds)
    if inherited.count:
        env = listen_fds.container_env(list(proc.get("env") or []), inherited.count, list(inherited.names))
        raw = raw.copy()
        raw["process"] = proc = {**proc, "env": env}
    notify = notify_passthrough.settings(raw)
    if placement.hands_over:  # the container talks to the service's socket itself: no proxy
        raw, notify = notify_passthrough.direct(raw, notify), None
    if notify is not None and notify_passthrough.needs_mount(raw, notify[1]):
        raw = notify_passthrough.with_mount(raw, os.path.join(rt.store.dir(cid), NOTIFY_DIR))
    plan: CreatePlan = {
        "exec": False,
        "id": cid,
        "config": raw,
        "bundle": bundle,
        "rootfs": rootfs,
        "start_socket": os.path.join(rt.store.dir(cid), START_SOCKET),
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
        hooks=(raw.get("hooks") or {}).copy(),
        oci_version=str(raw.get("ociVersion", "1.2.0")),
        systemd_cgroup=rt.systemd_cgroup,
        placement=placement.kind,
    )
    if placement.hands_over:  # the container's cgroup is below the service's, not a unit's own
        from oci_systemd.runtime.service_unit import container_cgroup

        record["cgroup"] = container_cgroup()
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
    return placement, plan, record, props
