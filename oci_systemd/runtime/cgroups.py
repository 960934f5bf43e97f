# SPDX-License-Identifier: Apache-2.0
"""The container's place in the unified cgroup hierarchy, below its delegated scope.

systemd owns the scope's cgroup; with Delegate=yes the subtree below it is ours. The
container's processes live in the leaf `<scope>/container`, because controllers can only
be enabled for children of a cgroup that holds no processes itself (systemd#26311).

Its files are ASCII, opened as UTF-8: that codec is loaded at start-up, the ascii codec
would be one more import for start and create.
"""

from __future__ import annotations

import os

from oci_systemd.errors import SyscallError

TYPE_CHECKING = False  # create imports this module: typing (~6 ms with re) for annotations only
if TYPE_CHECKING:
    from typing import Any

LEAF = "container"


def unified_mount() -> str | None:
    """Where cgroup2 is visibly mounted in our mount namespace (None on a pure v1 host).

    A later mount on the same point or on a parent shadows an earlier one: in a private
    systemd's namespace the host's /sys/fs/cgroup/unified is still listed, but hidden
    under the new cgroup2 on /sys/fs/cgroup, where `unified` is just a directory.
    """
    candidates: list[str] = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                point = left.split()[4]
                candidates = [
                    c for c in candidates if c != point and not c.startswith(point.rstrip("/") + "/")
                ]
                if right.split(" ", 1)[0] == "cgroup2":
                    candidates.append(point)
    except OSError:
        return None
    return candidates[0] if candidates else None


def cgroup_of(pid: int) -> str | None:
    """The pid's path in the unified hierarchy ("0::/system.slice/x.scope")."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        return None
    return None


def wait_until_empty(unit_cgroup: str, leaf: str, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `<unit's cgroup>/<leaf>` to hold no process (its
    cgroup.events says `populated 0`); True once it is empty or gone."""
    import time

    mount = unified_mount()
    if mount is None:
        return True
    events = os.path.join(mount + unit_cgroup, leaf, "cgroup.events")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(events, encoding="utf-8") as f:
                if "populated 0" in f.read():
                    return True
        except OSError:
            return True  # no such leaf: nothing to wait for
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def scope_dir(pid: int) -> str | None:
    mount = unified_mount()
    path = cgroup_of(pid)
    if mount is None or path is None:
        return None
    if path.endswith("/" + LEAF):
        path = path[: -len(LEAF) - 1]
    return os.path.join(mount, path.lstrip("/"))


def frozen(pid: int) -> bool:
    """The pid's cgroup is frozen or freezing: systemd's FreezeUnit writes `cgroup.freeze` of the
    scope; a frozen ancestor shows as `frozen 1` in the cgroup's own `cgroup.events`."""
    mount = unified_mount()
    path = cgroup_of(pid)
    if mount is None or path is None:
        return False
    own = os.path.join(mount, path.lstrip("/"))
    if _read_kv(os.path.join(own, "cgroup.events")).get("frozen") == 1:
        return True
    scope = scope_dir(pid)
    return scope is not None and _read_int(os.path.join(scope, "cgroup.freeze")) == 1


def enter_leaf(pid: int, leaf_name: str = LEAF) -> str | None:
    """Move `pid` into `<its scope>/<leaf_name>`; returns that directory, or None without cgroup2."""
    base = scope_dir(pid)
    if base is None:
        return None
    leaf = os.path.join(base, leaf_name)
    try:
        os.makedirs(leaf, exist_ok=True)
        with open(os.path.join(leaf, "cgroup.procs"), "w", encoding="utf-8") as f:
            f.write(str(pid))
    except OSError as exc:
        raise SyscallError.from_oserror("move to leaf cgroup", exc) from exc
    return leaf


def join(pid: int, container_pid: int) -> None:
    """Put `pid` (an exec'd process) into the cgroup of the container's init."""
    mount = unified_mount()
    path = cgroup_of(container_pid)
    if mount is None or path is None:
        return
    try:
        with open(os.path.join(mount, path.lstrip("/"), "cgroup.procs"), "w", encoding="utf-8") as f:
            f.write(str(pid))
    except OSError as exc:
        raise SyscallError.from_oserror("join container cgroup", exc) from exc


def _read_kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(" ")
                if value.strip().isdigit():
                    out[key] = int(value)
    except OSError:
        pass
    return out


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def stats(container_pid: int) -> dict[str, Any]:
    """The container's cgroup statistics in runc's `events --stats` shape (what cgroup2
    exposes here: files of absent controllers are left out)."""
    base = scope_dir(container_pid) or ""
    cpu = _read_kv(os.path.join(base, "cpu.stat"))
    mem = _read_kv(os.path.join(base, "memory.stat"))
    data: dict[str, Any] = {
        "cpu": {
            "usage": {
                "total": cpu.get("usage_usec", 0) * 1000,
                "kernel": cpu.get("system_usec", 0) * 1000,
                "user": cpu.get("user_usec", 0) * 1000,
            },
            "throttling": {
                "periods": cpu.get("nr_periods", 0),
                "throttledPeriods": cpu.get("nr_throttled", 0),
                "throttledTime": cpu.get("throttled_usec", 0) * 1000,
            },
        },
        "memory": {
            "usage": {
                "usage": _read_int(os.path.join(base, "memory.current")) or 0,
                "limit": _read_int(os.path.join(base, "memory.max")) or 0,
            },
            "swap": {"usage": _read_int(os.path.join(base, "memory.swap.current")) or 0},
            "raw": mem,
        },
        "pids": {
            "current": _read_int(os.path.join(base, "pids.current")) or _count_procs(base),
            "limit": _read_int(os.path.join(base, "pids.max")) or 0,
        },
        "blkio": {},
        "hugetlb": {},
    }
    return data


def _count_procs(base: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(base):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(dirpath, "cgroup.procs"), encoding="utf-8") as f:
                    total += sum(1 for line in f if line.strip())
            except OSError:
                continue
    return total
