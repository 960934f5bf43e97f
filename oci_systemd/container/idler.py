# SPDX-License-Identifier: Apache-2.0
"""The idler: the process that becomes the container.

`create` starts it as `python -I -S` with one channel fd. It enters or creates the
namespaces, forks the container's init when a pid or time namespace asks for it (they
apply to children only), waits until the runtime has put that init into its systemd
scope, builds the root filesystem, and then blocks on the start socket in the state
directory until `start`. On start it execs the user's program; its sockets are
close-on-exec, so `start` reads EOF on success and an error message on failure.

This is the hot path and its memory is benchmarked: stdlib only, no D-Bus, no click,
nothing imported that the work does not need.
"""

from __future__ import annotations

import errno
import os
import sys

from oci_systemd.container import channel, protocol
from oci_systemd.container.channel import Channel, UnixSocket
from oci_systemd.errors import ExecFailedError, OciSystemdError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this runs in the idler, and typing costs ~5 ms
if TYPE_CHECKING:
    import signal as _signal  # same functions and constants; typeshed has no stub for _signal
    from typing import Any

    from oci_systemd.container import config
    from oci_systemd.container.protocol import CreatePlan, ExecPlan
else:
    import _signal  # not `signal`: its enum wrappers cost ~4 ms (enum, functools, collections)

# Signals that end a waiting idler. As PID 1 of a pid namespace it would otherwise ignore
# them (the kernel delivers only handled signals to a namespace's init), and
# `oci-systemd kill <created container> TERM` must work.
_EXIT_SIGNALS = (
    _signal.SIGTERM,
    _signal.SIGINT,
    _signal.SIGHUP,
    _signal.SIGQUIT,
    _signal.SIGUSR1,
    _signal.SIGUSR2,
)


def _die_on_signal(signum: int, _frame: Any) -> None:
    os._exit(128 + signum)


def main() -> None:
    fd = int(sys.argv[1])
    # Inherited across exec, so not close-on-exec yet: it must be, both to keep it out of
    # the container and because its EOF is how the runtime learns that exec succeeded.
    os.set_inheritable(fd, False)
    chan = Channel.from_fd(fd)
    try:
        plan = protocol.recv_plan(chan)
        if plan["exec"]:
            _exec_into(chan, plan)
        else:
            _create(chan, plan)
    except channel.ChannelClosed:
        # The runtime went away mid-create: nothing is waiting for this container.
        os._exit(1)
    except BaseException as exc:  # report everything, the runtime decides
        _report(chan, exc)
        os._exit(1)


def _report(chan: Channel, exc: BaseException) -> None:
    """Send `exc` to the runtime, which raises it as the same class (protocol.error_from)."""
    protocol.send_error(chan, exc)


def _keep_fds(plan: CreatePlan | ExecPlan, *extra: int) -> set[int]:
    nfds = int(plan["extra_fds"])
    return {0, 1, 2, *range(3, 3 + nfds), *extra}


def _close_other_fds(keep: set[int]) -> None:
    """Close what the caller leaked to us (conmon, shells): only stdio and passed fds stay."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _create(chan: Channel, plan: CreatePlan) -> None:
    from oci_systemd.container import mounts, namespaces, process

    cfg = plan["config"]
    if cfg.get("hooks"):  # the hooks' module only for a config that has some (most have none)
        from oci_systemd.container import hooks
    linux = cfg.get("linux") or {}
    for sig in _EXIT_SIGNALS:
        _signal.signal(sig, _die_on_signal)
    _close_other_fds(_keep_fds(plan, chan.fileno()))
    proc: config.Process = cfg["process"]
    if proc.get("oomScoreAdj") is not None:
        # Before sealing: a sealed process's /proc files are root's, which a user's idler is
        # not; and before a user namespace, whose root is not the host's either. The value is
        # inherited by the container's processes.
        process.set_oom_score_adj(int(proc["oomScoreAdj"]))
    # Not dumpable: a process in the container cannot open /proc/<idler>/exe, which is
    # the host's interpreter (CVE-2019-5736).
    process.seal_self()

    # While still the host's root in the host's namespaces: in a new user namespace we become
    # the mapped uid, which may not enter the state directory, reach the console socket or
    # read the interpreter's files. Past enter_rootfs() those are out of reach anyway.
    listener = _listen_root_only(plan["start_socket"])
    # No fd of a host directory is kept: the waiting idler is the container's pid 1, and a
    # container process with CAP_SYS_PTRACE could walk /proc/1/fd/N/.. onto the host. `start`
    # removes the socket's name itself (its absence tells `state` that the container runs).
    console = channel.connect_unix(plan["console_socket"]) if plan["console_socket"] else None
    process.preload(linux.get("seccomp"))
    _preload_for_after_pivot(cfg, tty_wanted=console is not None)

    unprivileged = os.geteuid() != 0

    def sync_user_ns() -> None:
        if unprivileged:  # rootless: the user's runtime must open our /proc/<pid>/uid_map
            process.unseal_for_id_maps()
        protocol.send_userns(chan, os.getpid())
        protocol.recv_mapped(chan)

    # In the container's scope before any namespace or child exists: the init is born there
    # and a cgroup namespace is rooted there. (The runtime started the scope while this
    # interpreter was starting: both wait, in parallel.)
    protocol.recv_joined(chan)
    _prepare_idmapped_mounts(cfg, plan)
    # Forked while we are still the host's root: it opens the bind sources for us (user namespace).
    opener = mounts.SourceOpener.start(cfg, plan["bundle"])
    entered = namespaces.enter(linux.get("namespaces") or [], sync_user_ns=sync_user_ns)
    # A new user namespace changes our credentials, and commit_creds() then resets dumpable
    # to fs.suid_dumpable: seal again before any container process can exist.
    process.seal_self()
    sources = opener.receive() if opener is not None else None
    if linux.get("timeOffsets"):
        namespaces.write_time_offsets(linux["timeOffsets"])
    if entered.needs_fork:
        child = os.fork()
        if child:
            # The runtime reaps us; the init is reparented to its subreaper.
            protocol.send_pid(chan, child)
            os._exit(0)
    else:
        protocol.send_pid(chan, os.getpid())

    protocol.recv_scoped(chan)
    if entered.cgroup_pending:
        namespaces.unshare_cgroup()
    namespaces.set_hostname(cfg)
    if entered.new_net_ns:
        namespaces.loopback_up()

    rootfs = plan["rootfs"]
    mounts.prepare_rootfs(cfg, rootfs=rootfs, bundle=plan["bundle"], sources=sources)
    if cfg.get("hooks"):
        hooks.run_stage(
            "createContainer",
            cfg.get("hooks"),
            _hook_state(plan, "created"),
            default_env=proc.get("env") or [],
        )
    mounts.enter_rootfs(cfg, rootfs, no_pivot=plan["no_pivot"])
    forbid_imports()
    process.make_cwd(proc)  # before finish_rootfs makes / read-only, as runc
    mounts.finish_rootfs(cfg)
    # Like runc, a program that isn't there fails create, not start: podman and containerd
    # classify "executable file not found" from create's error as exit 127.
    _check_program(proc)
    # Also like runc: a limit this host can't grant fails create (applied again before exec).
    process.set_rlimits(proc.get("rlimits") or [])
    if not plan["no_new_keyring"]:
        namespaces.join_session_keyring(plan["id"])

    tty = None
    if console is not None:
        tty = _send_pty(console, proc)
    protocol.send_created(chan)
    chan.close()
    _wait_for_start(listener, plan, cfg, tty)


def _listen_root_only(path: str) -> UnixSocket:
    """Bind and listen on the start socket, mode 0600 whatever the caller's umask: only root
    may start a container (connecting to a unix socket needs write permission on it)."""
    listener = channel.bind_unix(path, mode=0o600)
    listener.listen(16)
    return listener


def forbid_imports() -> None:
    """After pivot_root (or joining the container's mount namespace) every path on sys.path
    names a file of the image: an import would run the image's code with our privileges.
    Everything needed was imported before; from here on nothing can be (sys.modules still
    serves what is loaded)."""
    sys.path.clear()
    sys.meta_path.clear()
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()


def _prepare_idmapped_mounts(cfg: config.Config, plan: CreatePlan) -> None:
    """Idmapped mounts are made while we are still the host's root (idmap.py says why)."""
    from oci_systemd.container import mounts

    if not any(mounts.wants_idmap(m) for m in cfg.get("mounts") or ()):
        return
    from oci_systemd.container import idmap

    idmap.prepare(cfg, bundle=plan["bundle"])


def _check_program(proc: config.Process) -> None:
    from oci_systemd.container import process

    args = proc.get("args") or []
    if not args:
        return
    cwd = proc.get("cwd") or "/"
    name = args[0]
    if "/" in name and not name.startswith("/"):
        name = os.path.join(cwd, name)  # relative to the process's cwd, as exec will see it
    try:
        process.find_executable(name, proc.get("env") or [])
    except ExecFailedError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):  # permissions may still change with the user
            raise
        return


def _preload_for_after_pivot(cfg: config.Config, *, tty_wanted: bool) -> None:
    if tty_wanted:  # _send_pty and _make_controlling_tty; extension modules, so only if used
        import fcntl  # noqa: F401
        import termios  # noqa: F401

    hooks = cfg.get("hooks") or {}
    if hooks.get("startContainer"):
        import subprocess  # noqa: F401


def _hook_state(plan: CreatePlan, status: str) -> dict[str, Any]:
    """The state a container hook reads on stdin; its pid is ours as the container sees it,
    as runc's createContainer and startContainer hooks get (runc's init: unix.Getpid())."""
    cfg = plan["config"]
    return {
        "ociVersion": cfg.get("ociVersion", "1.2.0"),
        "id": plan["id"],
        "status": status,
        "pid": os.getpid(),
        "bundle": plan["bundle"],
        "annotations": cfg.get("annotations") or {},
    }


def _send_pty(console: UnixSocket, proc: config.Process) -> int:
    """Open a pty in the container's devpts and send its master the way runc does."""
    import fcntl
    import termios

    master, slave = os.openpty()
    size = proc.get("consoleSize")
    if size:
        # struct winsize: four unsigned shorts (rows, cols, xpixel, ypixel) in host order
        winsize = b"".join(
            int(v).to_bytes(2, sys.byteorder) for v in (size.get("height", 0), size.get("width", 0), 0, 0)
        )
        fcntl.ioctl(slave, termios.TIOCSWINSZ, winsize)
    channel.send_fds(console, b"/dev/ptmx", [master])
    os.close(master)
    console.close()
    return slave


# How long one connection to the start socket may take to deliver its START: `start` sends
# it in one write right after connecting, so only a stalled or junk client ever waits this.
START_READ_TIMEOUT = 1.0


def _accept_start(listener: UnixSocket) -> Channel:
    """The first connection that sends START. Junk, errors and stalled clients are dropped:
    every read is bounded, so one connection can never keep a real `start` waiting."""
    while True:
        conn, _ = listener.accept()
        conn.settimeout(START_READ_TIMEOUT)
        peer = Channel(conn)
        try:
            protocol.recv_start(peer)
        # OciSystemdError: a client that sent an `error`; OSError: the read timed out
        except (ValueError, RecursionError, channel.ChannelClosed, OciSystemdError, OSError):
            peer.close()
            continue
        conn.settimeout(None)
        return peer


def _wait_for_start(listener: UnixSocket, plan: CreatePlan, cfg: config.Config, tty: int | None) -> None:
    peer = _accept_start(listener)
    listener.close()
    try:
        _exec_process(cfg["process"], plan, peer, tty, hook_state=_hook_state(plan, "running"))
    except BaseException as exc:
        _report(peer, exc)
        code = exc.exit_code if isinstance(exc, OciSystemdError) else 1
        os._exit(code)


def _exec_process(
    proc: config.Process,
    plan: CreatePlan | ExecPlan,
    peer: Channel,
    tty: int | None,
    *,
    hook_state: dict[str, Any] | None = None,
) -> None:
    """Prepare the process, run the startContainer hooks when `hook_state` is given, exec."""
    from oci_systemd.container import process

    if tty is not None:
        _make_controlling_tty(tty)
    env = list(proc.get("env") or [])
    if plan["listen_fds"]:
        # LISTEN_PID names the program as it sees itself: only now do we know that pid.
        env = [e for e in env if not e.startswith("LISTEN_PID=")] + [f"LISTEN_PID={os.getpid()}"]
    proc = {**proc, "env": env}
    keep = _keep_fds(plan, peer.fileno())
    linux = plan["config"].get("linux") or {}
    path, argv, envp = process.prepare(
        proc,
        keep_fds=keep,
        seccomp=linux.get("seccomp"),
        personality=linux.get("personality"),
        seccomp_notify=lambda fd: _hand_over_notify_fd(peer, fd),
    )
    if hook_state is not None and plan["config"].get("hooks"):
        # The hook is the image's binary: it runs as the process will, with its credentials,
        # capabilities, no_new_privs and seccomp filter, never with the idler's privileges
        # (runc runs them after finalizeNamespace and seccomp, right before exec).
        from oci_systemd.container import hooks  # imported by _create already: exec's idler never needs it

        hooks.run_stage("startContainer", plan["config"].get("hooks"), hook_state, default_env=envp)
    environ = dict(e.split("=", 1) for e in envp if "=" in e)
    for sig in _EXIT_SIGNALS:
        _signal.signal(sig, _signal.SIG_DFL)
    # Announce the exec: EOF after this means success, EOF before it means we died.
    protocol.send_exec(peer)
    try:
        os.execve(path, argv, environ)
    except OSError as exc:
        raise ExecFailedError(
            f'exec: "{argv[0]}": {os.strerror(exc.errno or 0).lower()}', err=exc.errno or 0
        ) from exc


def _hand_over_notify_fd(peer: Channel, fd: int) -> None:
    """The seccomp notify fd goes to `start` (or `exec`) on the host, which gives it to the agent
    at listenerPath: that path is out of our reach past pivot_root, and no host fd is ever held
    here. Wait until the agent has it (the spec: failing to send it is an error), then drop our
    copy, so the program never holds it."""
    try:
        protocol.send_seccomp(peer, fd)
    finally:
        os.close(fd)
    protocol.recv_seccomp_sent(peer)


def _make_controlling_tty(tty: int) -> None:
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(tty, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(tty, fd)
    if tty > 2:
        os.close(tty)


def _exec_into(chan: Channel, plan: ExecPlan) -> None:
    """`oci-systemd exec`: join a running container's namespaces, then exec its process.

    setns() into the mount namespace also moves our root and cwd to the container's
    root, so no chroot is needed; the console socket is connected before that, while its
    host path is still reachable. The runtime moves the forked child into the scope's
    cgroup before it sends START.
    """
    from oci_systemd.container import namespaces, process

    _close_other_fds(_keep_fds(plan, chan.fileno()))
    process.seal_self()
    cfg = plan["config"]
    console = channel.connect_unix(plan["console_socket"]) if plan["console_socket"] else None
    # Joining the mount namespace hides the host's interpreter files: load what comes later now.
    process.preload((cfg.get("linux") or {}).get("seccomp"))
    _preload_for_after_pivot(cfg, tty_wanted=console is not None)
    # Every namespace of the init that we do not share (those it joined by path included),
    # as runc exec: there is no partial join to ask for.
    namespaces.join_all(plan["target_pid"], [])
    forbid_imports()
    process.seal_self()  # joining a user namespace resets dumpable, as in _create
    child = os.fork()
    if child:
        protocol.send_pid(chan, child)
        os._exit(0)
    protocol.recv_start(chan)
    tty = _send_pty(console, cfg["process"]) if console is not None else None
    try:
        _exec_process(cfg["process"], plan, chan, tty)
    except BaseException as exc:
        _report(chan, exc)
        os._exit(exc.exit_code if isinstance(exc, OciSystemdError) else 1)


def exec_forked(chan: Channel, plan: ExecPlan) -> None:
    """`oci-systemd exec` without a second interpreter: the runtime forks and the child runs
    this with the plan it already holds; errors reach the runtime as from `main`. Never
    returns."""
    try:
        _exec_into(chan, plan)
    except BaseException as exc:
        _report(chan, exc)
    os._exit(1)


if __name__ == "__main__":
    main()
