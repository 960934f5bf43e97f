# SPDX-License-Identifier: Apache-2.0
"""The runtime's own record of a container, and how its status is derived.

systemd is the source of truth about what runs (the scope's ActiveState and its
processes), but it cannot tell `created` from `running`, and it keeps no exit status for
scopes: those live in `<root>/<id>/state.json`, written atomically (tmp + rename).
Operations on one id are serialised with flock on the container's directory; `create`
claims an id with mkdir, which is atomic.
"""

from __future__ import annotations

import errno
import fcntl
import os

from oci_systemd import jsonio
from oci_systemd.errors import ContainerExistsError, ContainerNotFoundError, InvalidIdError, SyscallError

# Every short command imports this module: typing, enum, re, json and contextlib (~12 ms
# together) stay out of it. Annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import ClassVar, TypedDict

    from oci_systemd.container import config

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"  # the config as created: exec's defaults, never re-read from the bundle
# The waiting idler's start socket: `start` connects to it (docs/protocol.md). Not sd_notify's
# NOTIFY_SOCKET, which is the notify/ directory's business (docs/sd-notify.md).
START_SOCKET = "start.sock"
# Its name up to 0.1.0: idlers created by such a runtime still wait on it, and a runtime
# upgraded under created containers must still start them (`start_socket`).
LEGACY_START_SOCKET = "notify.sock"
# Only root reads the state. The directories stay traversable (0711, not runc's 0700): an
# idler in a new user namespace, no longer the host's root, still reaches <root>/<id>/notify
# to bind-mount it. Nothing below can be listed or read by another user.
DIR_MODE = 0o711
FILE_MODE = 0o600

# runc's rule for container ids ([\w+\-.]+ in ASCII); also keeps ids usable in paths and
# unit names.
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-."
# A unit name has at most 255 characters: "oci-systemd-" + the escaped id + ".scope".
MAX_UNIT_NAME = 255
_UNIT_OVERHEAD = len("oci-systemd-.scope")


class Status(str):
    """A container's status: the string itself ("created"), with runc's transitions.

    The five statuses are singletons (`Status.CREATED`), compared with `is`. A str
    subclass rather than enum.StrEnum: enum costs every command ~1 ms at import.
    """

    __slots__ = ()

    CREATING: ClassVar[Status]
    CREATED: ClassVar[Status]
    RUNNING: ClassVar[Status]
    STOPPED: ClassVar[Status]
    PAUSED: ClassVar[Status]

    @property
    def value(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"<Status.{str.upper(self)}>"

    # What each verb allows, as runc decides it; every verb asks its own.

    def can_start(self) -> bool:
        return self is Status.CREATED

    def can_kill(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING, Status.PAUSED)

    def can_delete(self) -> bool:
        """Without --force (which deletes in any status): stopped, or created, whose init never
        ran the program (runc's delete.go kills a created container without --force too)."""
        return self in (Status.STOPPED, Status.CREATED)

    def can_exec(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING)

    def can_update(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING, Status.PAUSED)

    def can_pause(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING)

    def can_resume(self) -> bool:
        return self is Status.PAUSED

    def has_processes(self) -> bool:
        """ps lists and stats reads processes of a container in any status but stopped."""
        return self is not Status.STOPPED


Status.CREATING = Status("creating")
Status.CREATED = Status("created")
Status.RUNNING = Status("running")
Status.STOPPED = Status("stopped")
Status.PAUSED = Status("paused")


if TYPE_CHECKING:

    class Record(TypedDict, total=False):
        id: str
        bundle: str
        rootfs: str
        pid: int
        pid_start: int  # /proc/<pid>/stat start time, guards against pid reuse
        created: str  # RFC 3339
        owner: str
        annotations: dict[str, str]
        scope: str  # the container's unit (a scope today, whatever its placement)
        slice: str
        placement: str  # placement.py: "scope" (absent in records written before it existed)
        cgroup: str  # the container's cgroup where no unit of its own names it (the unit mode)
        phase: str  # "creating", "created", "started" (what the runtime did last)
        creator_pid: int
        creator_start: int  # with creator_pid: a recycled pid never looks like a live create
        hooks: config.Hooks  # poststart / poststop, read back by start and delete
        oci_version: str
        systemd_cgroup: bool
        notify_socket: str  # the caller's NOTIFY_SOCKET, when sd_notify is passed through
        notify_mode: str  # "container" (wait for the program's READY=1) or "started"
        seccomp_listener: dict[str, str]  # listenerPath + listenerMetadata, with SCMP_ACT_NOTIFY

else:
    Record = dict  # a TypedDict is a dict at runtime; this spares importing typing


def _escaped_len(cid: str) -> int:
    """Length of the id inside a unit name: '+' and a leading '.' become \\xNN."""
    return len(cid) + 3 * cid.count("+") + (3 if cid.startswith(".") else 0)


def validate_id(cid: str) -> None:
    """Reject ids that could escape the state directory or break unit names.

    Checked before anything touches the filesystem; "x\n" must not become a directory name.
    """
    if not isinstance(cid, str) or not cid:
        raise InvalidIdError("invalid container id: empty")
    # strip() leaves nothing only if every character is allowed ("x\n" keeps its "\n").
    if cid in (".", "..") or cid.strip(_ID_CHARS):
        shown = cid if cid.isprintable() else repr(cid)
        raise InvalidIdError(
            f"invalid container id format: {shown[:80]}", hint="use letters, digits, '_', '+', '-' and '.'"
        )
    if _escaped_len(cid) + _UNIT_OVERHEAD > MAX_UNIT_NAME:
        raise InvalidIdError(
            f"invalid container id: too long ({len(cid)} characters; its unit name "
            f"oci-systemd-<id>.scope must fit in {MAX_UNIT_NAME})"
        )


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    state = fields[0]
    if state in (b"Z", b"X"):
        return None
    return int(fields[19])


def start_socket(state_dir: str) -> str | None:
    """The path of the start socket a created container's idler waits on, None once `start`
    has removed it. An idler of an older runtime bound LEGACY_START_SOCKET: it is looked for
    only when START_SOCKET is missing, so today's containers pay nothing for it."""
    for name in (START_SOCKET, LEGACY_START_SOCKET):
        path = os.path.join(state_dir, name)
        if os.path.exists(path):
            return path
    return None


def pid_alive(record: Record) -> bool:
    pid = record.get("pid", 0)
    if pid <= 0:
        return False
    start = process_start_time(pid)
    return start is not None and start == record.get("pid_start")


def derive_status(
    record: Record, *, unit_state: str | None, alive: bool, frozen: bool = False, waiting: bool = True
) -> Status:
    """Combine systemd's view (unit state) with the runtime's record (phase) and the pid check.

    A scope systemd no longer runs means stopped, whatever the record says (it was
    stopped behind our back with `systemctl stop`, or its processes all exited).
    `waiting` says the idler's start socket still exists: `start` removes it when it hands
    START over, so a start that died before recording "started" still reads running.
    """
    phase = record.get("phase", "creating")
    if phase == "creating":
        creator = record.get("creator_pid", 0)
        started = process_start_time(creator) if creator else None
        if started is not None and started == record.get("creator_start", started):
            return Status.CREATING
        return Status.STOPPED  # the create that claimed this id died half-way
    if unit_state not in ("active", "activating", "reloading") or not alive:
        return Status.STOPPED
    if frozen:
        return Status.PAUSED
    return Status.RUNNING if phase == "started" or not waiting else Status.CREATED


class Store:
    """The state root (`--root`, default /run/oci-systemd) and its per-container dirs."""

    def __init__(self, root: str, *, mode: int = DIR_MODE) -> None:
        self.root = os.path.abspath(root)
        self.mode = mode  # of the root, when claim() creates it: a user's is 0700 (rootless.py)

    def dir(self, cid: str) -> str:
        validate_id(cid)
        return os.path.join(self.root, cid)

    def claim(self, cid: str) -> int:
        """Create the container's directory (atomic: one winner per id) and lock it.

        Returns the directory fd, locked; the caller releases with `release()`.
        """
        path = self.dir(cid)
        try:
            os.makedirs(self.root, mode=self.mode, exist_ok=True)
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            raise ContainerExistsError(cid) from None
        except OSError as exc:
            raise SyscallError.from_oserror("mkdir", exc) from exc
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def locked(self, cid: str, *, shared: bool = False) -> Locked:
        """Lock an existing container; `with` yields its record (ContainerNotFoundError if none)."""
        return Locked(self, cid, shared=shared)

    def read(self, cid: str) -> Record:
        try:
            with open(os.path.join(self.dir(cid), STATE_FILE), encoding="utf-8") as f:
                data: Record = jsonio.loads(f.read())
        except FileNotFoundError:
            # Claimed but never recorded: a create that died before its first write.
            return Record(id=cid, phase="creating", creator_pid=0)
        except (OSError, ValueError) as exc:
            raise ContainerNotFoundError(cid) from exc
        return data

    def write(self, cid: str, record: Record) -> None:
        path = os.path.join(self.dir(cid), STATE_FILE)
        tmp = f"{path}.{os.getpid()}.tmp"
        _write_private(tmp, jsonio.dumps(record))
        os.rename(tmp, path)

    def write_config(self, cid: str, created: config.Config) -> None:
        _write_private(os.path.join(self.dir(cid), CONFIG_FILE), jsonio.dumps(created))

    def read_config(self, cid: str) -> config.Config:
        try:
            with open(os.path.join(self.dir(cid), CONFIG_FILE), encoding="utf-8") as f:
                created: config.Config = jsonio.loads(f.read())
        except (OSError, ValueError) as exc:
            raise ContainerNotFoundError(cid) from exc
        return created

    def remove(self, cid: str) -> None:
        """Remove the container's directory and everything in it (the notify directory too)."""
        try:
            _remove_tree(self.dir(cid))
        except OSError as exc:
            raise SyscallError.from_oserror("remove state directory", exc) from exc

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(
            n for n in names if n and not n.strip(_ID_CHARS) and os.path.isdir(os.path.join(self.root, n))
        )


def _write_private(path: str, text: str) -> None:
    """Write a file only root can read, whatever the caller's umask: the record and the config
    hold the container's environment (secrets), hooks and bundle path."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _remove_tree(path: str) -> None:
    """rm -r for the state directory, without shutil (~2 ms of imports).

    Iterative and fd-relative, one directory open at a time: a tree of any depth or path
    length left in the notify directory is removed, never followed out of (symlinks are
    unlinked, `..` is checked against the directory we came from). What is already gone
    is fine (a racing delete).
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return
    # Per level above us: (the directory we went into, st_dev and st_ino of the one we left,
    # the subdirectories still to do there).
    above: list[tuple[str, int, int, list[str]]] = []
    try:
        subdirs = _clear_files(fd)
        while True:
            if subdirs:
                sub = subdirs.pop()
                try:
                    child = os.open(sub, flags, dir_fd=fd)
                except FileNotFoundError:
                    continue
                st = os.fstat(fd)
                above.append((sub, st.st_dev, st.st_ino, subdirs))
                os.close(fd)
                fd = child
                subdirs = _clear_files(fd)
                continue
            if not above:
                break
            name, dev, ino, subdirs = above.pop()
            parent = os.open("..", flags, dir_fd=fd)
            os.close(fd)
            fd = parent
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (dev, ino):
                raise OSError(errno.EXDEV, "directory moved while it was removed", path)
            _ignore_missing(os.rmdir, name, dir_fd=fd)
    finally:
        os.close(fd)
    _ignore_missing(os.rmdir, path)


def _clear_files(dirfd: int) -> list[str]:
    """Unlink everything in `dirfd` but directories; the names of those."""
    subdirs: list[str] = []
    with os.scandir(dirfd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                _ignore_missing(os.unlink, entry.name, dir_fd=dirfd)
    return subdirs


def _ignore_missing(remove: Callable[..., None], name: str, dir_fd: int | None = None) -> None:
    try:
        remove(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


class Locked:
    """`with store.locked(cid) as record`: flock on the container's directory for the block.

    A class, not @contextmanager: contextlib (and collections with it) costs every short
    command ~2 ms at import. `release()` is for callers that must leave the block early.
    """

    def __init__(self, store: Store, cid: str, *, shared: bool) -> None:
        self.store, self.cid, self.shared = store, cid, shared
        self.fd = -1

    def __enter__(self) -> Record:
        path = self.store.dir(self.cid)
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            # Not a directory: a stray file under the root (or a root that is a file) is no
            # container either (runc: "open <root>/<id>/state.json: not a directory", exit 1).
            raise ContainerNotFoundError(self.cid) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
            # The directory may have been removed while we waited for the lock.
            if os.fstat(self.fd).st_nlink == 0:
                raise ContainerNotFoundError(self.cid)
            return self.store.read(self.cid)
        except BaseException:
            self.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
