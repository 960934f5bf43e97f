# SPDX-License-Identifier: Apache-2.0
"""The sandbox's namespaces: made by a double fork, prepared by their PID 1, which then execs systemd.

`spawn` forks a launcher that joins the sandbox's cgroup2 subtree, unshares pid, mount, cgroup,
uts and ipc namespaces, forks their PID 1 and exits at once: no launcher process is left behind,
and the pid it reports is the host pid of the sandbox's systemd itself. That PID 1 prepares its
mount namespace (`setup_inner_mounts`; nothing of it propagates back to the host) and execs
what `sandbox.up` asked for:

* private tmpfs on /run, /tmp and /var/tmp, with the checkout, the interpreter's prefix and the
  cwd bound back when they live under one of them (`_open_paths_to_keep`);
* /dev/net/tun and /dev/fuse, which a user's own slirp4netns and fuse-overlayfs (rootless
  podman's network and storage) open: nodes of the sandbox's own, mode 0666 as udev makes them
  on a systemd host, bound over the host's (`_give_users_devices`); the host's nodes keep their
  mode;
* the cgroup2 root of the sandbox's own subtree on /sys/fs/cgroup;
* a private tmpfs on /var/log, for a persistent journal that is not the host's
  (`_private_journal`);
* the console log bound over /dev/console.
"""

from __future__ import annotations

import contextlib
import grp
import os
import stat
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from oci_systemd.container.linux import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    mount,
    umount2,
    unshare,
)
from oci_systemd.errors import SandboxError

# ---------------------------------------------------------------------------------------------------
# The mount namespace


_PRIVATE_DIRS = ("/tmp", "/var/tmp", "/run")
# Device nodes an unprivileged user opens. udev's default rules (50-udev-default.rules) make them
# 0666 on a systemd host; without udev (this project's build machines) they keep the kernel's
# 0600 root, and a user's slirp4netns or fuse-overlayfs gets EACCES: root of the user's own
# namespace has no DAC override for a file of a uid it does not map.
_USER_DEVICES = ("/dev/net/tun", "/dev/fuse")
_DEVICE_STAGING = "/run/oci-systemd-sandbox-dev"


def _open_paths_to_keep() -> list[tuple[str, int]]:
    """O_PATH fds of the checkout, the interpreter's prefix and the cwd when they sit in a
    directory the sandbox makes private; bound back at the same place once it is."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    wanted = {os.path.realpath(p) for p in (here, sys.prefix, os.getcwd())}
    kept = []
    for path in sorted(wanted):
        if any(path == d or path.startswith(d + "/") for d in _PRIVATE_DIRS) and path not in _PRIVATE_DIRS:
            kept.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC)))
    return kept


def _give_users_devices() -> None:
    """Bind a node of the sandbox's own (the same device, mode 0666) over each of _USER_DEVICES
    the host has. The nodes come from a tmpfs (device nodes on the private /run, mounted nodev,
    would not open) that is detached again at once: only the bind mounts remain, in this mount
    namespace alone, and die with it."""
    present = [path for path in _USER_DEVICES if os.path.exists(path)]
    if not present:
        return
    os.mkdir(_DEVICE_STAGING, 0o700)
    mount("tmpfs", _DEVICE_STAGING, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0700")
    try:
        for path in present:
            info = os.stat(path)
            if not stat.S_ISCHR(info.st_mode):
                continue
            node = f"{_DEVICE_STAGING}/{os.path.basename(path)}"
            os.mknod(node, stat.S_IFCHR | 0o600, info.st_rdev)
            os.chmod(node, 0o666)  # mknod's mode passes through the umask
            mount(node, path, None, MS_BIND)
    finally:
        umount2(_DEVICE_STAGING, MNT_DETACH)
        os.rmdir(_DEVICE_STAGING)


def setup_inner_mounts(console_log: Path) -> None:
    """Runs as PID 1 of the new namespaces, before exec'ing systemd."""
    # Nothing mounted here may propagate back to the host.
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # This checkout and its venv may live under /tmp (a CI clone, say): keep them reachable
    # through the private tmpfs, or the runtime could not run inside.
    kept = _open_paths_to_keep()
    mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    mount("tmpfs", "/var/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    _give_users_devices()
    for path, fd in kept:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    # The tmpfs hides the host's v1 controller mounts; inside the cgroup namespace the cgroup2
    # root is our own subtree.
    mount("tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755")
    mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    Path("/run/systemd/system").mkdir(parents=True)
    _private_journal()
    # systemd writes early failures to /dev/console only.
    mount(os.fspath(console_log), "/dev/console", None, MS_BIND)


def _private_journal() -> None:
    """A persistent journal on a tmpfs of the sandbox's own over /var/log (the host's /var/log
    and its journal stay untouched). Persistent, because journald splits off each user's
    entries (user-UID.journal, which an ACL lets that user read: `journalctl --user`) only in
    /var/log/journal; a volatile journal is one file in /run that only root can read."""
    mount("tmpfs", "/var/log", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755")
    journal = Path("/var/log/journal")
    journal.mkdir()
    # As systemd's tmpfiles.d/systemd.conf has it: the files inherit group systemd-journal.
    with contextlib.suppress(KeyError):
        os.chown(journal, 0, grp.getgrnam("systemd-journal").gr_gid)
    journal.chmod(0o2755)
    dropin = Path("/run/systemd/journald.conf.d")
    dropin.mkdir(parents=True)
    (dropin / "oci-systemd-sandbox.conf").write_text("[Journal]\nStorage=persistent\n")


# ---------------------------------------------------------------------------------------------------
# Launch


def _exec_pid1(console_log: Path, argv: list[str], env: dict[str, str]) -> NoReturn:
    """Grandchild: PID 1 of the new pid namespace. Never returns."""
    try:
        fd = os.open(console_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open("/dev/null", os.O_RDONLY)
        # The sandbox must not hold the caller's terminal or pipes open.
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        setup_inner_mounts(console_log)
        os.execve(argv[0], argv, env)
    except BaseException:
        with contextlib.suppress(BaseException):
            sys.stderr.write("oci-systemd sandbox: setup failed\n" + traceback.format_exc())
            sys.stderr.flush()
        os._exit(127)


def _launcher(cgroup: Path, console_log: Path, argv: list[str], env: dict[str, str], wfd: int) -> NoReturn:
    """Intermediate child: joins the cgroup, unshares, forks systemd, reports its pid and exits."""
    try:
        os.setsid()
        # The cgroup namespace's root is the cgroup we are in when unsharing.
        (cgroup / "cgroup.procs").write_text("0\n")
        unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC)
        pid = os.fork()
        if pid == 0:
            os.close(wfd)
            _exec_pid1(console_log, argv, env)
        os.write(wfd, f"ok {pid}\n".encode())
        os._exit(0)
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            os.write(wfd, f"error {exc}\n".encode())
        os._exit(1)


def spawn(name: str, cgroup: Path, console_log: Path, argv: list[str], env: dict[str, str]) -> int:
    """The host pid of `argv` run as PID 1 of sandbox `name`'s new namespaces in `cgroup`.
    Double fork: the launcher exits at once, so systemd's parent is the host's reaper."""
    rfd, wfd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(rfd)
        _launcher(cgroup, console_log, argv, env, wfd)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as reader:
        report = reader.read().decode().strip()
    os.waitpid(child, 0)
    word, _, detail = report.partition(" ")
    if word != "ok":
        raise SandboxError(f"cannot launch sandbox {name}: {detail or 'launcher died'}")
    return int(detail)
