# SPDX-License-Identifier: Apache-2.0
"""Rootless: the runtime run by an unprivileged user, in that user's own systemd manager.

A throw-away user (users.py) with `user@UID.service` running inside the sandbox writes a
bundle with `oci-systemd spec --rootless` and drives the runtime as itself: the scope must be
in its manager's app.slice with Delegate=yes, the state in its XDG_RUNTIME_DIR (0700), and
what it may not have refused before anything exists. docs/rootless.md.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bundles
import engines
import pytest
import users
from test_lifecycle import Container, wait_for
from test_systemd_native import INIT_SRC, MESSAGE_IDS, UNITS, _compile_static, _journal

from oci_systemd.devtools.sandbox import Sandbox
from oci_systemd.devtools.sandbox_users import UserSession


@pytest.fixture(scope="module")
def user(sandbox: Sandbox) -> Iterator[UserSession]:
    with users.throwaway_user(sandbox) as session:
        yield session


class UserContainer(Container):
    """A bundle of `user` (`spec --rootless`, a private busybox rootfs it owns) and its id;
    test_lifecycle's create/state/output, with the runtime run as the user."""

    def __init__(
        self, user: UserSession, args: list[str], edit: Callable[[dict[str, Any]], None] | None
    ) -> None:
        self.user = user
        self.sb = user.sandbox
        self.id = bundles.new_container_id()
        self.scope = f"oci-systemd-{self.id}.scope"
        self.host_bundle = self.sb.host_path(f"{bundles.INNER_WORKDIR}/rootless/{self.id}")
        self.host_bundle.mkdir(parents=True)
        shutil.copytree(bundles.ensure_rootfs(self.sb), self.host_bundle / "rootfs", symlinks=True)
        for path in [self.host_bundle, *self.host_bundle.rglob("*")]:
            os.lchown(path, user.uid, user.gid)
        self.bundle = self.sb.inner_path(self.host_bundle)
        spec = self.rt("spec", "--rootless", "--bundle", self.bundle)
        assert spec.returncode == 0, spec.stderr
        conf = json.loads((self.host_bundle / "config.json").read_text())
        conf["process"]["terminal"] = False  # the tests capture stdio
        conf["process"]["args"] = args
        if edit is not None:
            edit(conf)
        (self.host_bundle / "config.json").write_text(json.dumps(conf))

    def rt(self, *args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
        """The runtime as the user, in the user's login environment (or `env`)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("capture_output", True)
        return self.user.run(
            [*bundles.runtime_argv(), *args], env=env, text=True, timeout=60, check=False, **kw
        )

    def show(self, *props: str) -> dict[str, str]:
        """`systemctl --user show` of the container's scope, as the user."""
        argv = ["systemctl", "--user", "show", self.scope, *(f"--property={p}" for p in props)]
        out = self.user.run(argv, capture_output=True, text=True, check=False).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture
def make(user: UserSession) -> Iterator[Callable[..., UserContainer]]:
    made: list[UserContainer] = []

    def factory(args: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> UserContainer:
        c = UserContainer(user, args, edit)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.rt("delete", "--force", c.id)
        shutil.rmtree(c.host_bundle, ignore_errors=True)


def state_root(user: UserSession) -> Path:
    return user.sandbox.host_path(f"{user.runtime_dir}/oci-systemd")


def nothing_left(c: UserContainer) -> None:
    """No unit in the user's manager or PID 1, no state, no process of the container."""
    assert c.show("LoadState") == {"LoadState": "not-found"}
    system = c.sb.run(
        ["systemctl", "show", c.scope, "-p", "LoadState", "--value"], capture_output=True, text=True
    )
    assert system.stdout.strip() == "not-found"
    assert not (state_root(c.user) / c.id).exists()
    ps = c.sb.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert c.id not in ps


# -- what works ------------------------------------------------------------------------------


def test_lifecycle_in_the_users_manager(user: UserSession, make: Callable[..., UserContainer]) -> None:
    c = make(["sleep", "1000"])
    created = c.create()
    assert created.returncode == 0, c.output()
    st = c.state()
    assert st["status"] == "created"
    assert st["owner"] == user.user
    assert (c.host_bundle / "pid").read_text() == str(st["pid"])
    props = c.show("Delegate", "Slice", "ControlGroup", "ActiveState")
    assert props["Delegate"] == "yes"
    assert props["Slice"] == "app.slice"
    assert props["ActiveState"] == "active"
    manager = f"/user.slice/user-{user.uid}.slice/user@{user.uid}.service"
    assert props["ControlGroup"] == f"{manager}/app.slice/{c.scope}"
    # The system manager never heard of it; the state is the user's own, 0700.
    system = c.sb.run(
        ["systemctl", "show", c.scope, "-p", "LoadState", "--value"], capture_output=True, text=True
    )
    assert system.stdout.strip() == "not-found"
    root = state_root(user).stat()
    assert (root.st_uid, root.st_mode & 0o777) == (user.uid, 0o700)

    assert c.rt("start", c.id).returncode == 0
    assert c.state()["status"] == "running"
    # exec: the container's root is the user, and the process is in the container's cgroup
    # (the root of its cgroup namespace), not left in the caller's.
    maps = c.rt("exec", c.id, "cat", "/proc/self/uid_map", "/proc/self/cgroup")
    assert maps.returncode == 0, maps.stderr
    assert maps.stdout.split()[:3] == ["0", str(user.uid), "1"]
    assert "0::/\n" in maps.stdout
    ps = c.rt("ps", c.id)
    assert ps.returncode == 0 and "sleep 1000" in ps.stdout, ps.stderr

    assert c.rt("pause", c.id).returncode == 0
    assert c.state()["status"] == "paused"
    assert c.rt("resume", c.id).returncode == 0
    assert c.rt("kill", c.id, "KILL").returncode == 0
    wait_for(lambda: c.state()["status"] == "stopped")
    deleted = c.rt("delete", c.id)
    assert deleted.returncode == 0, deleted.stderr
    nothing_left(c)


def test_run_returns_the_exit_status_and_leaves_nothing(make: Callable[..., UserContainer]) -> None:
    c = make(["sh", "-c", "id -u; exit 3"])
    proc = c.rt("run", "--bundle", c.bundle, c.id)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "0"
    nothing_left(c)


def test_spec_rootless_runs_as_is_in_a_terminal(
    user: UserSession, make: Callable[..., UserContainer]
) -> None:
    """The config exactly as `spec --rootless` writes it (a terminal, `sh`), run on a pty."""
    if shutil.which("script") is None:
        pytest.skip("script(1) is not installed")
    c = make([])
    (c.host_bundle / "config.json").unlink()  # not the test's edits
    spec = c.rt("spec", "--rootless", "--bundle", c.bundle)
    assert spec.returncode == 0, spec.stderr
    run = " ".join([*bundles.runtime_argv(), "run", "--bundle", c.bundle, c.id])
    # script(1) gives the runtime a terminal; the shell reads its commands from it.
    shell_input = "echo in-$(id -u)-container; exit 5\n"
    proc = c.user.run(
        ["script", "-qec", run, "/dev/null"],
        input=shell_input, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "in-0-container" in proc.stdout
    nothing_left(c)


def test_kill_all_of_a_detached_run(make: Callable[..., UserContainer]) -> None:
    c = make(["sleep", "1000"])
    with (c.host_bundle / "output").open("w") as out:
        proc = c.rt(
            "run", "--detach", "--bundle", c.bundle, c.id, stdout=out, stderr=out, capture_output=False
        )
    assert proc.returncode == 0, (c.host_bundle / "output").read_text()
    assert c.rt("kill", "--all", c.id, "KILL").returncode == 0
    wait_for(lambda: c.state()["status"] == "stopped")
    assert c.rt("delete", c.id).returncode == 0
    nothing_left(c)


def test_limits_the_user_manager_cannot_enforce_are_left_out_with_a_warning(
    make: Callable[..., UserContainer],
) -> None:
    def limits(conf: dict[str, Any]) -> None:
        conf["linux"]["resources"] = {
            "memory": {"limit": 64 << 20},
            "devices": [{"allow": False, "access": "rwm"}],
        }

    c = make(["true"], limits)
    proc = c.create()
    assert proc.returncode == 0, c.output()
    # No controller reaches this sandbox's cgroup2 (the host binds them to v1), so the user
    # manager has none to delegate: the memory limit is one it cannot enforce either.
    assert "rootless: MemoryMax not applied" in c.output()
    assert c.show("DevicePolicy")["DevicePolicy"] == "auto"


def test_runc_runs_the_same_bundle_as_the_same_user(make: Callable[..., UserContainer]) -> None:
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed")
    c = make(["sh", "-c", "cat /proc/self/uid_map; exit 3"])
    ours = c.rt("run", "--bundle", c.bundle, c.id)
    runc = c.user.run(
        ["runc", "--systemd-cgroup", "run", "--bundle", c.bundle, f"runc-{c.id}"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (ours.returncode, ours.stdout.split()) == (runc.returncode, runc.stdout.split()) == (
        3, ["0", str(c.user.uid), "1"]
    ), (ours.stderr, runc.stderr)  # fmt: skip


# -- what a user may not have --------------------------------------------------------------


def _refused(c: UserContainer, message: str, **kw: Any) -> None:
    proc = c.rt("run", "--bundle", c.bundle, c.id, **kw)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr
    nothing_left(c)


def test_without_xdg_runtime_dir(user: UserSession, make: Callable[..., UserContainer]) -> None:
    c = make(["true"])
    env = {k: v for k, v in user.env().items() if k not in ("XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS")}
    _refused(c, "XDG_RUNTIME_DIR is not set: a user's containers are kept there", env=env)


def test_a_map_of_root_is_refused(user: UserSession, make: Callable[..., UserContainer]) -> None:
    def map_root(conf: dict[str, Any]) -> None:
        conf["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]

    _refused(
        make(["true"], map_root),
        f"linux.uidMappings maps host uids 0-0, outside what uid {user.uid} may map",
    )


def test_a_range_beyond_the_subuid_range_is_refused(
    user: UserSession, make: Callable[..., UserContainer]
) -> None:
    [(start, count)] = users.subids(user.user, "/etc/subuid")

    def beyond(conf: dict[str, Any]) -> None:
        conf["linux"]["uidMappings"] = [
            {"containerID": 0, "hostID": user.uid, "size": 1},
            {"containerID": 1, "hostID": start, "size": count + 1},
        ]

    _refused(make(["true"], beyond), f"outside what uid {user.uid} may map ({user.uid}-{user.uid}, {start}-")


def test_a_subuid_range_needs_newuidmap(user: UserSession, make: Callable[..., UserContainer]) -> None:
    if shutil.which("newuidmap") is not None:
        pytest.skip("newuidmap is installed: this checks the error without it")
    [(start, count)] = users.subids(user.user, "/etc/subuid")

    def subuids(conf: dict[str, Any]) -> None:
        conf["linux"]["uidMappings"] = [
            {"containerID": 0, "hostID": user.uid, "size": 1},
            {"containerID": 1, "hostID": start, "size": count},
        ]

    _refused(make(["true"], subuids), "needs newuidmap, which is not installed")


def test_a_subuid_range_through_newuidmap(user: UserSession, make: Callable[..., UserContainer]) -> None:
    """0 is the user, 1.. its subordinate ids: the maps go through newuidmap/newgidmap, which
    leave setgroups allowed, and a file chowned to 1000 inside is the range's 1000th id outside."""
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        pytest.skip("newuidmap/newgidmap are not installed (Debian: uidmap)")
    [(uid_start, uid_count)] = users.subids(user.user, "/etc/subuid")
    [(gid_start, gid_count)] = users.subids(user.user, "/etc/subgid")

    def subids(conf: dict[str, Any]) -> None:
        conf["linux"]["uidMappings"] = [
            {"containerID": 0, "hostID": user.uid, "size": 1},
            {"containerID": 1, "hostID": uid_start, "size": uid_count},
        ]
        conf["linux"]["gidMappings"] = [
            {"containerID": 0, "hostID": user.gid, "size": 1},
            {"containerID": 1, "hostID": gid_start, "size": gid_count},
        ]
        conf["process"]["user"]["additionalGids"] = [5]
        conf["root"]["readonly"] = False  # spec's default: the file is written into the rootfs
        for caps in ("bounding", "effective", "permitted"):
            conf["process"]["capabilities"][caps].append("CAP_CHOWN")

    c = make(["sh", "-c", "cat /proc/self/setgroups; id -G; touch /tmp/x; chown 1000:1000 /tmp/x"], subids)
    proc = c.rt("run", "--bundle", c.bundle, c.id)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["allow", "0", "5"]
    st = (c.host_bundle / "rootfs" / "tmp" / "x").stat()
    assert (st.st_uid, st.st_gid) == (uid_start + 999, gid_start + 999)
    nothing_left(c)


def test_without_a_user_namespace(make: Callable[..., UserContainer]) -> None:
    def no_userns(conf: dict[str, Any]) -> None:
        linux = conf["linux"]
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "user"]
        del linux["uidMappings"], linux["gidMappings"]

    _refused(make(["true"], no_userns), "a rootless container needs a user namespace")


def test_roots_containers_are_invisible_to_the_user(
    sandbox: Sandbox, make: Callable[..., UserContainer]
) -> None:
    conf = bundles.base_config()
    _, root_id = bundles.run_and_get_output(sandbox, conf, ["sleep", "1000"], detach=True)
    c = make(["true"])
    for args in (("state", root_id), ("kill", root_id, "KILL"), ("delete", root_id)):
        proc = c.rt(*args)
        assert proc.returncode == 1 and f"container does not exist: {root_id}" in proc.stderr, (
            args,
            proc.stderr,
        )
    # As with runc, --force makes a missing container no error: still, it is not root's.
    assert c.rt("delete", "--force", root_id).returncode == 0
    assert root_id not in c.rt("list").stdout
    root_state = bundles.run_runtime(sandbox, ["state", root_id])
    assert json.loads(root_state.stdout)["status"] == "running"


def test_another_users_containers_are_out_of_reach(
    sandbox: Sandbox, user: UserSession, make: Callable[..., UserContainer]
) -> None:
    with users.throwaway_user(sandbox) as other:
        theirs = UserContainer(other, ["sleep", "1000"], None)
        try:
            assert theirs.create().returncode == 0, theirs.output()
            assert theirs.rt("start", theirs.id).returncode == 0
            mine = make(["true"])
            proc = mine.rt("state", theirs.id)
            assert proc.returncode == 1 and "does not exist" in proc.stderr, proc.stderr
            # Their state root is theirs alone (0700): not even by name.
            proc = mine.rt("--root", f"{other.runtime_dir}/oci-systemd", "delete", "--force", theirs.id)
            assert proc.returncode != 0 and "permission denied" in proc.stderr, proc.stderr
            assert theirs.state()["status"] == "running"
        finally:
            theirs.rt("delete", "--force", theirs.id)
            shutil.rmtree(theirs.host_bundle, ignore_errors=True)


# -- what else needs privileges a user lacks -------------------------------------------------
# The same `spec --rootless` bundle with one thing more. Refused: up front (before anything
# exists) when that is certain, else as the kernel refuses it, with the field named either way
# and nothing left. docs/rootless.md, "What is refused", has runc 1.1's answer to each.

Edit = Callable[[dict[str, Any]], None]


def _put(dotted: str, value: Any) -> Edit:
    """Set `dotted` ("linux.netDevices") in the config."""

    def edit(conf: dict[str, Any]) -> None:
        *parents, key = dotted.split(".")
        node = conf
        for name in parents:
            node = node.setdefault(name, {})
        node[key] = value

    return edit


def _namespaces(*, add: tuple[dict[str, str], ...] = (), drop: tuple[str, ...] = ()) -> Edit:
    def edit(conf: dict[str, Any]) -> None:
        kept = [ns for ns in conf["linux"]["namespaces"] if ns["type"] not in drop]
        conf["linux"]["namespaces"] = [*kept, *add]

    return edit


def _mount(entry: dict[str, Any]) -> Edit:
    """Add `entry`, or put it in the place of the mount with its destination."""

    def edit(conf: dict[str, Any]) -> None:
        mounts = [m for m in conf["mounts"] if m["destination"] != entry["destination"]]
        conf["mounts"] = [*mounts, entry]

    return edit


def _all(*edits: Edit) -> Edit:
    def edit(conf: dict[str, Any]) -> None:
        for one in edits:
            one(conf)

    return edit


def _user_sh(user: UserSession, script: str) -> str:
    """A shell line run as the user, as its runtime would be: its limits and scores."""
    return str(user.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout.strip())


CGROUP = {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}
SYSFS = {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "ro"]}
REFUSED = [
    pytest.param(
        _put("linux.devices", [{"path": "/dev/ocirl-none", "type": "c", "major": 1, "minor": 3}]),
        "linux.devices[0]: /dev/ocirl-none: a user namespace cannot make device nodes",
        id="device-the-host-lacks",
    ),
    pytest.param(
        _all(_namespaces(add=({"type": "network"},)), _put("linux.netDevices", {"ocirl0": {}})),
        "linux.netDevices: moving the host's network device 'ocirl0' into the container needs CAP_NET_ADMIN",
        id="net-devices",
    ),
    pytest.param(
        _put("linux.sysctl", {"kernel.domainname": "example"}),
        "linux.sysctl 'kernel.domainname': /proc/sys/kernel/domainname belongs to root of the initial",
        id="uts-sysctl",
    ),
    pytest.param(
        _put("linux.sysctl", {"vm.swappiness": "10"}),
        "sysctl 'vm.swappiness' is not in a separate kernel namespace",
        id="host-sysctl",
    ),
    pytest.param(
        _put("process.ioPriority", {"class": "IOPRIO_CLASS_RT", "priority": 0}),
        "process.ioPriority: IOPRIO_CLASS_RT needs CAP_SYS_ADMIN or CAP_SYS_NICE",
        id="io-priority-rt",
    ),
    pytest.param(
        _put("linux.intelRdt", {"closID": "ocirl"}),
        "linux.intelRdt: only root may write the resctrl filesystem",
        id="intel-rdt",
    ),
    pytest.param(
        _namespaces(drop=("pid",)),
        "mounts[0]: proc on /proc needs the container's own pid namespace",
        id="proc-without-pid-namespace",
    ),
    pytest.param(
        _namespaces(drop=("ipc",)),
        "mqueue on /dev/mqueue needs the container's own ipc namespace",
        id="mqueue-without-ipc-namespace",
    ),
    pytest.param(
        _mount({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["uid=1000"]}),
        "option uid=1000 on /mnt: container uid 1000 is not mapped (linux.uidMappings has 0-0)",
        id="mount-option-of-an-unmapped-uid",
    ),
    pytest.param(
        _put("process.user.uid", 1000),
        "process.user.uid 1000 is not mapped (linux.uidMappings has 0-0)",
        id="unmapped-process-user",
    ),
    pytest.param(
        _put("process.user.additionalGids", [0]),
        "process.user.additionalGids: setgroups(2) is denied in a user namespace whose gid map is only",
        id="additional-gids-with-the-own-gid-map",
    ),
    pytest.param(
        _namespaces(add=({"type": "network", "path": "/proc/1/ns/net"},)),
        "joining the network namespace /proc/1/ns/net needs CAP_SYS_ADMIN over it",
        id="a-namespace-of-another-user-namespace",
    ),
    pytest.param(
        _put("hooks", {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}]}),
        "error running createRuntime hook /bin/sh: exit status 7",
        id="a-failing-hook",
    ),
    # Only the kernel knows: the idler's error names the field.
    pytest.param(
        _mount({"destination": "/mnt", "type": "ext4", "source": "/dev/loop0", "options": ["ro"]}),
        "mounts[6] (ext4): a user namespace mounts only filesystems the kernel allows there",
        id="kernel-a-filesystem-a-user-namespace-may-not-mount",
    ),
]


@pytest.mark.parametrize(("edit", "message"), REFUSED)
def test_what_needs_privileges_is_refused_naming_it(
    make: Callable[..., UserContainer], edit: Edit, message: str
) -> None:
    _refused(make(["true"], edit), message)


def test_an_oom_score_below_the_users_own_is_the_kernels_refusal(
    user: UserSession, make: Callable[..., UserContainer]
) -> None:
    """Lowering it needs CAP_SYS_RESOURCE below the lowest a privileged writer set: the kernel
    knows that floor, /proc does not show it."""
    own = int(_user_sh(user, "cat /proc/self/oom_score_adj"))
    if own == -1000:
        pytest.skip("the user's score is already the lowest")
    low = max(own - 100, -1000)
    _refused(
        make(["true"], _put("process.oomScoreAdj", low)), f"`process.oomScoreAdj {low}`: permission denied"
    )


def test_a_hard_limit_above_the_users_own_is_refused(
    user: UserSession, make: Callable[..., UserContainer]
) -> None:
    own = _user_sh(user, "ulimit -Hn")
    if own == "unlimited":
        pytest.skip("the user's hard RLIMIT_NOFILE is unlimited")
    rlimits = [{"type": "RLIMIT_NOFILE", "hard": int(own) + 1, "soft": 1024}]
    _refused(
        make(["true"], _put("process.rlimits", rlimits)),
        f"process.rlimits RLIMIT_NOFILE: hard limit {int(own) + 1} is above the runtime's own ({own})",
    )


def test_a_real_time_scheduler_beyond_rlimit_rtprio_is_the_kernels_refusal(
    user: UserSession, make: Callable[..., UserContainer]
) -> None:
    if _user_sh(user, "ulimit -r") != "0":
        pytest.skip("the user has an RLIMIT_RTPRIO: SCHED_FIFO may be allowed")
    sched = {"policy": "SCHED_FIFO", "priority": 10}
    _refused(
        make(["true"], _put("process.scheduler", sched)),
        "sched_setattr `process.scheduler SCHED_FIFO`: operation not permitted",
    )


WORKS = [
    pytest.param(
        ["ls", "-l", "/dev/fuse"],
        _put("linux.devices", [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]),
        "10, 229",
        id="device-bound-from-the-host",
        marks=pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="the host has no /dev/fuse"),
    ),
    pytest.param(
        ["sh", "-c", "test -p /dev/ocirl-fifo && echo fifo"],
        _put("linux.devices", [{"path": "/dev/ocirl-fifo", "type": "p"}]),
        "fifo",
        id="fifo-made-with-mknod",  # runc 1.1 binds it from the host too, and fails
    ),
    pytest.param(
        ["cat", "/proc/sys/net/ipv4/ip_forward"],
        _all(_namespaces(add=({"type": "network"},)), _put("linux.sysctl", {"net.ipv4.ip_forward": "1"})),
        "1",
        id="sysctl-of-its-own-network-namespace",
    ),
    pytest.param(
        ["cat", "/proc/self/oom_score_adj"], _put("process.oomScoreAdj", 500), "500", id="oom-score-raised"
    ),
    pytest.param(
        ["grep", "CapEff", "/proc/self/status"],
        _put("process.capabilities", {k: ["CAP_SYS_ADMIN"] for k in ("bounding", "effective", "permitted")}),
        f"{1 << 21:016x}",  # its user namespace's root holds every capability there
        id="any-capability-in-its-user-namespace",
    ),
    pytest.param(
        ["sh", "-c", "test -d /sys/kernel && echo sysfs"],
        _mount(SYSFS),
        "sysfs",
        id="sysfs-without-network-namespace-bound",
    ),
    pytest.param(
        ["ls", "/sys/fs/cgroup"],
        _all(_namespaces(drop=("cgroup",)), _mount(CGROUP)),
        "cgroup.procs",
        id="cgroup-without-cgroup-namespace-bound",  # runc's `spec --rootless` has this mount
    ),
    pytest.param(
        ["uname", "-m"],
        _put("linux.personality", {"domain": "LINUX32"}),
        "i686",
        id="personality",
        marks=pytest.mark.skipif(platform.machine() != "x86_64", reason="LINUX32 of x86_64 is i686"),
    ),
    pytest.param(
        ["cat", "/proc/self/timens_offsets"],
        _all(
            _namespaces(add=({"type": "time"},)),
            _put("linux.timeOffsets", {"monotonic": {"secs": 86400, "nanosecs": 0}}),
        ),
        "monotonic       86400",
        id="time-offsets",
    ),
]


@pytest.mark.parametrize(("args", "edit", "output"), WORKS)
def test_what_a_user_namespace_allows_works(
    make: Callable[..., UserContainer], args: list[str], edit: Edit, output: str
) -> None:
    c = make(args, edit)
    proc = c.rt("run", "--bundle", c.bundle, c.id)
    assert proc.returncode == 0, proc.stderr
    assert output in proc.stdout
    nothing_left(c)


def test_hooks_run_with_the_users_rights(user: UserSession, make: Callable[..., UserContainer]) -> None:
    c = make(["true"])
    conf = json.loads((c.host_bundle / "config.json").read_text())
    conf["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", f"id -u > {c.bundle}/uid"]}]}
    (c.host_bundle / "config.json").write_text(json.dumps(conf))
    proc = c.rt("run", "--bundle", c.bundle, c.id)
    assert proc.returncode == 0, proc.stderr
    assert (c.host_bundle / "uid").read_text().strip() == str(user.uid)


def test_namespaces_joined_with_their_user_namespace(
    user: UserSession, make: Callable[..., UserContainer]
) -> None:
    """A user's own `unshare -Urn`: its network namespace may be joined along with its user
    namespace (whose maps are set: the config has none). runc 1.1 wants maps even then."""
    # Its pid once it is `sleep`: unshare has made the namespaces and written the maps by then.
    pid = _user_sh(
        user,
        "unshare -Urn sleep 100 >/dev/null 2>&1 & pid=$!; "
        'while [ "$(cat /proc/$pid/comm)" != sleep ]; do sleep 0.01; done; echo $pid',
    )
    try:

        def join(conf: dict[str, Any]) -> None:
            _namespaces(
                add=(
                    {"type": "user", "path": f"/proc/{pid}/ns/user"},
                    {"type": "network", "path": f"/proc/{pid}/ns/net"},
                ),
                drop=("user",),
            )(conf)
            del conf["linux"]["uidMappings"], conf["linux"]["gidMappings"]

        c = make(["sh", "-c", "readlink /proc/self/ns/net; cat /proc/self/uid_map"], join)
        proc = c.rt("run", "--bundle", c.bundle, c.id)
        assert proc.returncode == 0, proc.stderr
        theirs = _user_sh(user, f"readlink /proc/{pid}/ns/net")
        assert proc.stdout.split() == [theirs, "0", str(user.uid), "1"]
        nothing_left(c)
    finally:
        user.run(["kill", pid], check=False)


# -- rootless podman -------------------------------------------------------------------------


# A rootless user's own ~/.config/containers/storage.conf: vfs, or overlay with the kernel's
# overlayfs (mounted in the user's namespace, Linux >= 5.13) or fuse-overlayfs as mount_program.
# podman 4.3 takes a rootless store's graphroot, runroot and mount_program from this file only:
# of CONTAINERS_STORAGE_CONF (the system's file) it keeps the driver and puts the store in
# ~/.local/share/containers, while containers.conf's static_dir (its database) stays where
# engines.CONTAINERS_CONF says; the exit command (`podman container cleanup`, given --root)
# then looked in <store>/libpod, found no such container, and `run --rm` and `wait` waited out
# podman's 20 s conmon timeout. The run root must be at most 50 characters (containers/storage).
STORAGE_CONFS = {
    "vfs": 'driver = "vfs"\n',
    "overlay": 'driver = "overlay"\n',
    "fuse-overlayfs": 'driver = "overlay"\n\n[storage.options.overlay]\n'
    'mount_program = "/usr/bin/fuse-overlayfs"\n',
}
USER_STORAGE_CONF = '[storage]\ngraphroot = "{d}/storage"\nrunroot = "{run}"\n'


class UserPodman:
    """podman run by `user` (rootless: its own user namespace, under a HOME in the sandbox's
    /tmp, no network unless asked), with oci-systemd as its runtime through engines' wrapper.
    `storage` is a key of STORAGE_CONFS; each has its own store and run root, so that several
    live side by side for one user."""

    def __init__(self, user: UserSession, storage: str = "vfs") -> None:
        self.user = user
        self.storage = storage
        sb = user.sandbox
        suffix = "" if storage == "vfs" else f"-{storage}"
        self.dir = f"{bundles.INNER_WORKDIR}/rootless/podman-{user.user}{suffix}"
        self.wrapper, self.argv_log = engines.write_runtime_wrapper(sb, self.dir)
        run = f"{user.runtime_dir}/podman{suffix}"
        # podman's tmp dir in XDG_RUNTIME_DIR, as rootless podman has it by default: slirp4netns's
        # API socket is made there (`port_handler=slirp4netns`), and a socket's path is < 108 bytes.
        containers_conf = engines.CONTAINERS_CONF.format(d=self.dir)
        tmp_line = f'tmp_dir = "{self.dir}/tmp"'
        assert tmp_line in containers_conf
        tmp_dir = f"{user.runtime_dir}/libpod{suffix}"
        containers_conf = containers_conf.replace(tmp_line, f'tmp_dir = "{tmp_dir}"')
        for name, text in (
            ("containers.conf", containers_conf),
            (
                "home/.config/containers/storage.conf",
                USER_STORAGE_CONF.format(d=self.dir, run=run) + STORAGE_CONFS[storage],
            ),
            ("registries.conf", engines.REGISTRIES_CONF),
        ):
            sb.host_path(f"{self.dir}/{name}").parent.mkdir(parents=True, exist_ok=True)
            sb.host_path(f"{self.dir}/{name}").write_text(text)
        sb.host_path(f"{self.dir}/cni").mkdir(parents=True, exist_ok=True)
        tar = engines.busybox_rootfs_tar(sb, self.dir)
        host_dir = sb.host_path(self.dir)
        for path in [host_dir, *host_dir.rglob("*")]:
            os.lchown(path, user.uid, user.gid)
        self.env = {
            **user.env(),
            "HOME": f"{self.dir}/home",
            "CONTAINERS_CONF": f"{self.dir}/containers.conf",
            "CONTAINERS_REGISTRIES_CONF": f"{self.dir}/registries.conf",
        }
        self.imported = self("import", tar, engines.IMAGE)

    def argv(self, *args: str) -> list[str]:
        return ["podman", *args]

    def __call__(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        return self.user.run(
            self.argv(*args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,
        )

    def calls(self) -> list[list[str]]:
        return engines.read_argv_log(self.user.sandbox, self.argv_log)


@pytest.fixture(scope="module")
def podman(user: UserSession) -> UserPodman:
    engines.require_binaries("podman", "conmon", "newuidmap")
    podman = UserPodman(user)
    assert podman.imported.returncode == 0, engines.text(podman.imported)
    return podman


def _libpod_scopes(user: UserSession, cid: str) -> str:
    argv = ["systemctl", "--user", "list-units", "--all", "--no-legend", "--plain", f"libpod-*{cid}*"]
    return str(user.run(argv, capture_output=True, text=True, check=False).stdout).strip()


def test_rootless_podman_run_rm_returns_the_exit_status(user: UserSession, podman: UserPodman) -> None:
    proc = podman("run", "--rm", engines.IMAGE, "sh", "-c", "echo hi; cat /proc/self/uid_map; exit 3")
    assert proc.returncode == 3, engines.text(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "hi"
    # podman's own user namespace (the user, then its subordinate range) seen from inside.
    [(start, count)] = users.subids(user.user, "/etc/subuid")
    assert [line.split() for line in lines[1:]] == [["0", str(user.uid), "1"], ["1", str(start), str(count)]]
    assert any("create" in call for call in podman.calls()), "podman did not call oci-systemd"


def test_rootless_podman_detached_exec_logs_stop_rm(user: UserSession, podman: UserPodman) -> None:
    script = 'echo started; trap "echo bye; exit 0" TERM; while true; do sleep 0.1; done'
    started = podman("run", "-d", engines.IMAGE, "sh", "-c", script)
    assert started.returncode == 0, engines.text(started)
    cid = started.stdout.strip()
    scope = f"libpod-{cid}.scope"
    show = user.run(
        ["systemctl", "--user", "show", scope, "-p", "Delegate", "-p", "ControlGroup"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    assert "Delegate=yes" in show and f"/user@{user.uid}.service/user.slice/{scope}" in show, show
    execd = podman("exec", cid, "sh", "-c", "echo in-exec; exit 4")
    assert (execd.returncode, execd.stdout) == (4, "in-exec\n"), engines.text(execd)
    if shutil.which("script") is not None:  # exec -t needs a terminal of the caller's
        command = " ".join(podman.argv("exec", "-t", cid, "sh", "-c", "tty; exit 6"))
        tty = user.run(
            ["script", "-qec", command, "/dev/null"], env=podman.env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert tty.returncode == 6 and "/dev/pts/" in tty.stdout, tty.stdout + tty.stderr
    wait_for(lambda: "started" in podman("logs", cid).stdout)
    stopped = podman("stop", "-t", "5", cid)
    assert stopped.returncode == 0, engines.text(stopped)
    assert "bye" in podman("logs", cid).stdout
    assert podman("rm", cid).returncode == 0
    wait_for(lambda: _libpod_scopes(user, cid) == "")
    assert not (state_root(user) / cid).exists()


def test_rootless_podman_missing_program_is_127(user: UserSession, podman: UserPodman) -> None:
    proc = podman("run", "--rm", engines.IMAGE, "/no/such/program")
    assert proc.returncode == 127, engines.text(proc)
    assert "not found" in proc.stderr or "no such file" in proc.stderr.lower(), proc.stderr


# -- rootless podman: a network of the user's own ---------------------------------------------

# Shows the container's IPv4 addresses and routes (busybox's ip, the kernel's route table).
NET_PROBE = "ip -4 addr; echo --; cat /proc/net/route"


def _require_tun() -> None:
    """slirp4netns and pasta open /dev/net/tun as root of the user's namespace: the sandbox
    gives it mode 0666 (sandbox_namespaces._give_users_devices); without the tun driver there is none."""
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun: this kernel has no tun driver, slirp4netns and pasta need it")


def _dotted(little_endian_hex: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(little_endian_hex, 16)))


def _network_view(out: str) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
    """NET_PROBE's output as {(interface, address/prefix)} and {(interface, destination,
    gateway)}: what two runtimes must agree on (MAC addresses and lifetimes differ per run)."""
    ip_addr, _, route_table = out.partition("--\n")
    inets = [line.split() for line in ip_addr.splitlines() if line.strip().startswith("inet ")]
    routes = [line.split() for line in route_table.splitlines()[1:] if line.strip()]
    return (
        {(inet[-1], inet[1]) for inet in inets},
        {(route[0], _dotted(route[1]), _dotted(route[2])) for route in routes},
    )


def test_rootless_podman_slirp4netns_gives_an_address_and_a_default_route(podman: UserPodman) -> None:
    engines.require_binaries("slirp4netns", "runc")
    _require_tun()
    views = {}
    for runtime in ("oci-systemd", "runc"):
        proc = podman(
            "--runtime",
            runtime,
            "run",
            "--rm",
            "--network",
            "slirp4netns",
            engines.IMAGE,
            "sh",
            "-c",
            NET_PROBE,
        )
        assert proc.returncode == 0, engines.text(proc)
        views[runtime] = _network_view(proc.stdout)
    addrs, routes = views["oci-systemd"]
    # slirp4netns's network: 10.0.2.0/24 on tap0, the container .100, the gateway (the host) .2.
    assert addrs == {("lo", "127.0.0.1/8"), ("tap0", "10.0.2.100/24")}, addrs
    assert ("tap0", "0.0.0.0", "10.0.2.2") in routes, routes
    assert views["runc"] == views["oci-systemd"]


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the sandbox shares the host's network namespace)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Who forwards a published port: podman's rootlessport (the default; it listens in the sandbox's
# namespace and connects inside the container's) or slirp4netns itself (through its API socket).
PORT_HANDLERS = {"rootlessport": "slirp4netns", "slirp4netns": "slirp4netns:port_handler=slirp4netns"}


@pytest.mark.parametrize("handler", sorted(PORT_HANDLERS))
def test_rootless_podman_publishes_a_port_through_slirp4netns(
    user: UserSession, podman: UserPodman, handler: str
) -> None:
    engines.require_binaries("slirp4netns", "busybox")
    _require_tun()
    port = _free_port()
    serve = 'mkdir /www && echo "hello from $(hostname)" > /www/index.html && exec httpd -f -p 80 -h /www'
    started = podman(
        "run", "-d", "--network", PORT_HANDLERS[handler], "-p", f"127.0.0.1:{port}:80", engines.IMAGE,
        "sh", "-c", serve,
    )  # fmt: skip
    assert started.returncode == 0, engines.text(started)
    cid = started.stdout.strip()
    netns = podman("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", cid).stdout.strip()
    sb = user.sandbox

    def fetch() -> subprocess.CompletedProcess[str]:
        """The page, from the user's side (the sandbox's network namespace, the host's)."""
        argv = ["busybox", "wget", "-qO-", f"http://127.0.0.1:{port}/"]
        return user.run(argv, capture_output=True, text=True, timeout=10, check=False)

    try:
        assert netns.startswith(f"{user.runtime_dir}/netns/"), netns
        wait_for(lambda: fetch().returncode == 0)
        assert fetch().stdout == f"hello from {cid[:12]}\n"
        assert bool(engines.processes_mentioning(sb, "rootlessport")) == (handler == "rootlessport")
        # exec joins the container's network namespace: the server is on its own loopback.
        execd = podman("exec", cid, "wget", "-qO-", "http://127.0.0.1/")
        assert (execd.returncode, execd.stdout) == (0, f"hello from {cid[:12]}\n"), engines.text(execd)
        # httpd as PID 1 has no handler for SIGTERM, so no `stop` (it would wait out -t).
        removed = podman("rm", "-f", "-t", "0", cid)
        assert removed.returncode == 0, engines.text(removed)
    finally:
        podman("rm", "-f", "-t", "0", cid)
    # slirp4netns and the port forwarder go with the container, and so does its netns file.
    wait_for(lambda: not engines.processes_mentioning(sb, netns))
    wait_for(lambda: not engines.processes_mentioning(sb, "rootlessport"))
    assert not sb.host_path(netns).exists()
    assert fetch().returncode != 0
    wait_for(lambda: _libpod_scopes(user, cid) == "")


def test_rootless_podman_pasta(podman: UserPodman) -> None:
    engines.require_binaries("pasta")
    _require_tun()
    proc = podman("run", "--rm", "--network", "pasta", engines.IMAGE, "sh", "-c", NET_PROBE)
    if proc.returncode != 0 and "unable to find network with name or ID pasta" in proc.stderr:
        version = podman("--version").stdout.strip()
        pytest.skip(f"{version} has no pasta network mode (podman 4.4 added it): {proc.stderr.strip()}")
    assert proc.returncode == 0, engines.text(proc)
    addrs, routes = _network_view(proc.stdout)
    # pasta copies the host's addresses and routes into the container's namespace.
    assert [a for a in addrs if a[0] != "lo"], addrs
    assert [r for r in routes if r[1] == "0.0.0.0"], routes


# -- rootless podman: overlay storage --------------------------------------------------------

# How each storage shows in /proc/self/mounts: the kernel's overlayfs or a FUSE mount.
ROOT_FSTYPES = {"overlay": "overlay", "fuse-overlayfs": "fuse.fuse-overlayfs"}


@pytest.fixture(scope="module", params=["overlay", "fuse-overlayfs"])
def overlay_podman(request: pytest.FixtureRequest, user: UserSession) -> UserPodman:
    storage = str(request.param)
    engines.require_binaries("podman", "conmon", "newuidmap")
    if storage == "fuse-overlayfs":
        engines.require_binaries("fuse-overlayfs")
        if not os.path.exists("/dev/fuse"):
            pytest.skip("no /dev/fuse: this kernel has no FUSE, fuse-overlayfs needs it")
    podman = UserPodman(user, storage)
    imported = podman.imported
    if imported.returncode != 0 and storage == "overlay" and "not supported" in imported.stderr:
        pytest.skip(f"the kernel's overlayfs in a user namespace: {imported.stderr.strip()}")
    assert imported.returncode == 0, engines.text(imported)
    # The user's storage.conf is the one in force: its store, and the mount program or none.
    info = podman("info", "--format", "{{.Store.GraphRoot}} {{.Store.GraphOptions}}")
    assert info.stdout.startswith(f"{podman.dir}/storage "), engines.text(info)
    assert ("fuse-overlayfs" in info.stdout) == (storage == "fuse-overlayfs"), info.stdout
    return podman


def test_rootless_podman_overlay_storage_run_exec_stop_rm(
    user: UserSession, overlay_podman: UserPodman
) -> None:
    podman = overlay_podman
    proc = podman(
        "run",
        "--rm",
        engines.IMAGE,
        "sh",
        "-c",
        "grep ' / ' /proc/self/mounts; echo x > /new; cat /new; exit 3",
    )
    assert proc.returncode == 3, engines.text(proc)
    root_line, written = proc.stdout.splitlines()
    assert root_line.split()[2] == ROOT_FSTYPES[podman.storage] and written == "x", proc.stdout
    script = 'echo started; trap "echo bye; exit 0" TERM; while true; do sleep 0.1; done'
    started = podman("run", "-d", engines.IMAGE, "sh", "-c", script)
    assert started.returncode == 0, engines.text(started)
    cid = started.stdout.strip()
    upper = podman("inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", cid).stdout.strip()
    layer = os.path.basename(os.path.dirname(upper))
    try:
        execd = podman("exec", cid, "sh", "-c", "echo from-exec > /in-exec; cat /in-exec")
        assert (execd.returncode, execd.stdout) == (0, "from-exec\n"), engines.text(execd)
        # What the container writes lands in its layer of the store, owned by the user.
        written_file = user.sandbox.host_path(f"{upper}/in-exec")
        assert written_file.read_text() == "from-exec\n" and written_file.stat().st_uid == user.uid
        wait_for(lambda: "started" in podman("logs", cid).stdout)
        stopped = podman("stop", "-t", "5", cid)
        assert stopped.returncode == 0, engines.text(stopped)
        assert "bye" in podman("logs", cid).stdout
        assert podman("rm", cid).returncode == 0
    finally:
        podman("rm", "-f", "-t", "0", cid)
    # The container's root is unmounted in podman's namespace and fuse-overlayfs has exited.
    mounts = podman("unshare", "cat", "/proc/self/mountinfo")
    assert mounts.returncode == 0 and layer not in mounts.stdout, engines.text(mounts)
    wait_for(lambda: not engines.processes_mentioning(user.sandbox, layer))
    wait_for(lambda: _libpod_scopes(user, cid) == "")
    assert not (state_root(user) / cid).exists()


# -- units/ as user units ----------------------------------------------------------------------


# Both kinds of units/, as the user's own: the scope with its relay, and the unit mode.
USER_UNIT_FILES = (
    "oci-scope@.service",
    "oci-scope@.socket",
    "oci-container@.service",
    "oci-container@.socket",
)


@pytest.fixture(scope="module")
def user_units(user: UserSession) -> Iterator[str]:
    """units/oci-scope@.* and oci-container@.* as the user's units (in its runtime unit
    directory, $XDG_RUNTIME_DIR/systemd/user), with this checkout's runtime and the tests'
    bundles' directory. The sockets are at %t, the user's runtime directory, as the unit files
    say. Yields the bundles' directory."""
    sb = user.sandbox
    containers = f"{bundles.INNER_WORKDIR}/rootless"
    unit_dir = sb.host_path(f"{user.runtime_dir}/systemd/user")
    unit_dir.mkdir(parents=True, exist_ok=True)
    runtime = " ".join(bundles.runtime_argv())
    replacements = {
        "/usr/bin/oci-systemd": runtime,
        "OCI_CONTAINERS_DIR=%S/oci-containers": f"OCI_CONTAINERS_DIR={containers}",
    }
    for unit in USER_UNIT_FILES:
        text = (UNITS / unit).read_text()
        for old, new in replacements.items():
            text = text.replace(old, new)
        (unit_dir / unit).write_text(text)
    _systemctl_user(user, "daemon-reload")
    yield containers
    for unit in USER_UNIT_FILES:
        (unit_dir / unit).unlink(missing_ok=True)
    _systemctl_user(user, "daemon-reload")


def _systemctl_user(user: UserSession, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = user.run(
        ["systemctl", "--user", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    units = [a for a in args if a.endswith((".service", ".socket"))]
    assert proc.returncode == 0, proc.stderr + "".join(_user_unit_journal(user, u) for u in units)
    return proc


def _user_show(user: UserSession, unit: str, prop: str) -> str:
    return str(_systemctl_user(user, "show", unit, "-p", prop, "--value").stdout).strip()


def _unit_bundle(
    sandbox: Sandbox, make: Callable[..., UserContainer], args: list[str], **annotations: str
) -> UserContainer:
    """A rootless bundle whose rootfs has the static test init (test_systemd_native's)."""

    def edit(conf: dict[str, Any]) -> None:
        conf["annotations"] = annotations

    c = make(args, edit)
    init = c.host_bundle / "rootfs" / "bin" / "oci-test-init"
    shutil.copy2(_compile_static(sandbox, INIT_SRC), init)
    os.chown(init, c.user.uid, c.user.gid)
    return c


def _ask_socket(user: UserSession, path: str) -> subprocess.CompletedProcess[str]:
    """Connect to a unit's listening socket as the user; the answer is the activated program's."""
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(20)\n"
        f"s.connect({path!r})\n"
        "print(s.makefile().readline().strip())\n"
    )
    return user.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)


def _ready_bundle(sandbox: Sandbox, make: Callable[..., UserContainer]) -> UserContainer:
    """A program that says READY=1 itself, two seconds after it starts."""
    return _unit_bundle(
        sandbox,
        make,
        ["/bin/oci-test-init", "notify", "2", "READY=1"],
        **{"io.github.oci-systemd.notify": "container"},
    )


def _start_waits_for_ready(user: UserSession, service: str) -> None:
    t0 = time.monotonic()
    _systemctl_user(user, "start", service)
    elapsed = time.monotonic() - t0
    assert elapsed >= 2.0, f"systemctl --user start returned after {elapsed:.2f}s, before READY=1"


def test_user_unit_with_socket_activation(
    sandbox: Sandbox, user: UserSession, user_units: str, make: Callable[..., UserContainer]
) -> None:
    c = _unit_bundle(sandbox, make, ["/bin/oci-test-init", "accept-fd3"])
    service, socket_unit = f"oci-scope@{c.id}.service", f"oci-scope@{c.id}.socket"
    try:
        _systemctl_user(user, "start", socket_unit)
        assert _user_show(user, service, "ActiveState") == "inactive"
        answer = _ask_socket(user, f"{user.runtime_dir}/oci-scope-{c.id}.sock")
        assert answer.stdout.strip() == f"LISTEN_FDS=1 LISTEN_FDNAMES={c.id} LISTEN_PID=1 PID=1", (
            answer.stderr
        )
        assert _user_show(user, service, "ActiveState") == "active"
        assert c.show("Delegate", "Slice") == {"Delegate": "yes", "Slice": "app.slice"}
    finally:
        user.run(
            ["systemctl", "--user", "stop", service, socket_unit],
            capture_output=True,
            timeout=60,
            check=False,
        )
    wait_for(lambda: c.show("LoadState") == {"LoadState": "not-found"})
    assert not (state_root(user) / c.id).exists()


def test_user_unit_type_notify_waits_for_ready(
    sandbox: Sandbox, user: UserSession, user_units: str, make: Callable[..., UserContainer]
) -> None:
    c = _ready_bundle(sandbox, make)
    service = f"oci-scope@{c.id}.service"
    try:
        _start_waits_for_ready(user, service)
        assert _user_show(user, service, "ActiveState") == "active"
        assert c.state()["status"] == "running"
        # MainPID stays `oci-systemd run`: a user manager takes MAINPID= from an unprivileged
        # sender only for a process of the service's own cgroup, and the init is in its scope.
        _systemctl_user(user, "stop", service)
        state = _user_show(user, service, "ActiveState")
        assert state == "inactive", _user_unit_journal(user, service) + _user_unit_journal(
            user, service, field="USER_UNIT"
        )
    finally:
        user.run(["systemctl", "--user", "stop", service], capture_output=True, timeout=60, check=False)
    wait_for(lambda: c.show("LoadState") == {"LoadState": "not-found"})
    assert not (state_root(user) / c.id).exists()


# -- the unit mode in the user's manager (oci-container@ as a user unit) -----------------------


def _manager_pid(user: UserSession) -> int:
    out = user.sandbox.run(
        ["systemctl", "show", user.unit, "-p", "MainPID", "--value"], capture_output=True, text=True
    )
    return int(out.stdout)


def _user_unit_journal(user: UserSession, unit: str, field: str = "_SYSTEMD_USER_UNIT") -> str:
    """The lines journald filed under the user's unit (read as root, by field; what the user
    itself reads is test_user_unit_lifecycle_reaches_the_users_journal's); USER_UNIT= for what
    the user's manager logged about it."""
    argv = ["journalctl", "--no-pager", "-o", "cat", f"{field}={unit}"]
    return str(user.sandbox.run(argv, capture_output=True, text=True).stdout)


def _ps_args(sb: Sandbox, pid: int) -> str:
    out = sb.run(["cat", f"/proc/{pid}/cmdline"], capture_output=True, text=True, check=False)
    return str(out.stdout).replace("\0", " ")


def _stop_user_units(user: UserSession, *units: str) -> None:
    user.run(["systemctl", "--user", "stop", *units], capture_output=True, timeout=60, check=False)
    user.run(["systemctl", "--user", "reset-failed", *units], capture_output=True, timeout=60, check=False)


def test_user_unit_mode_the_container_is_the_service(
    user: UserSession, user_units: str, make: Callable[..., UserContainer]
) -> None:
    loop = "trap 'echo got TERM; exit 0' TERM; echo hello from the container; while :; do sleep 0.1; done"
    c = make(["sh", "-c", loop])
    service = f"oci-container@{c.id}.service"
    try:
        _systemctl_user(user, "start", service)
        assert _user_show(user, service, "ActiveState") == "active"
        main = int(_user_show(user, service, "MainPID"))
        assert c.state()["pid"] == main
        status = _ps_status(user.sandbox, main)
        # The user manager's own child (it is a subreaper): the runtime and the idler exited.
        assert int(status["PPid"]) == _manager_pid(user)
        cgroup = user.sandbox.run(["cat", f"/proc/{main}/cgroup"], capture_output=True, text=True).stdout
        manager = f"/user.slice/user-{user.uid}.slice/user@{user.uid}.service"
        [unified] = [line for line in cgroup.splitlines() if line.startswith("0::")]
        # app.slice/app-oci\x2dcontainer.slice/: the user manager's slice for a template's instances
        assert unified.startswith(f"0::{manager}/app.slice/") and unified.endswith(f"/{service}/container")
        procs = user.sandbox.host_path(f"/sys/fs/cgroup{unified[3:].removesuffix('/container')}")
        wait_for(
            lambda: all(
                "oci-systemd" not in _ps_args(user.sandbox, int(pid))
                and "oci_systemd" not in _ps_args(user.sandbox, int(pid))
                for path in procs.rglob("cgroup.procs")
                for pid in path.read_text().split()
            )
        )
        assert c.show("LoadState") == {"LoadState": "not-found"}  # no scope
        wait_for(lambda: "hello from the container" in _user_unit_journal(user, service))
        t0 = time.monotonic()
        _systemctl_user(user, "stop", service)
        assert time.monotonic() - t0 < 5, "SIGTERM did not reach the program"
        assert _user_show(user, service, "ActiveState") == "inactive"
        assert "got TERM" in _user_unit_journal(user, service)
        manager_says = _user_unit_journal(user, service, field="USER_UNIT")  # the manager's own lines
        assert "Started" in manager_says and "not our child" not in manager_says
    finally:
        _stop_user_units(user, service)
    assert not (state_root(user) / c.id).exists()


def _ps_status(sb: Sandbox, pid: int) -> dict[str, str]:
    out = sb.run(["cat", f"/proc/{pid}/status"], capture_output=True, text=True, check=True).stdout
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def test_user_unit_mode_exit_status_and_restart(
    user: UserSession, user_units: str, make: Callable[..., UserContainer]
) -> None:
    c = make(["sh", "-c", "echo run; exit 3"])
    service = f"oci-container@{c.id}.service"
    dropin = user.sandbox.host_path(f"{user.runtime_dir}/systemd/user/{service}.d")
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "50-test.conf").write_text("[Service]\nRestartSec=100ms\n")
    try:
        _systemctl_user(user, "daemon-reload")
        _systemctl_user(user, "start", service)
        wait_for(lambda: _user_show(user, service, "ExecMainStatus") == "3", timeout=20)
        assert _user_show(user, service, "ExecMainCode") == "1"  # CLD_EXITED
        assert _user_show(user, service, "Result") == "exit-code"
        wait_for(lambda: int(_user_show(user, service, "NRestarts") or 0) >= 1, timeout=20)
    finally:
        _stop_user_units(user, service)
        shutil.rmtree(dropin, ignore_errors=True)
        _systemctl_user(user, "daemon-reload")
    wait_for(lambda: not (state_root(user) / c.id).exists())


def test_user_unit_mode_socket_activation_and_ready(
    sandbox: Sandbox, user: UserSession, user_units: str, make: Callable[..., UserContainer]
) -> None:
    c = _unit_bundle(sandbox, make, ["/bin/oci-test-init", "accept-fd3"])
    service, socket_unit = f"oci-container@{c.id}.service", f"oci-container@{c.id}.socket"
    try:
        _systemctl_user(user, "start", socket_unit)
        answer = _ask_socket(user, f"{user.runtime_dir}/oci-container-{c.id}.sock")
        assert answer.stdout.strip() == f"LISTEN_FDS=1 LISTEN_FDNAMES={c.id} LISTEN_PID=1 PID=1", (
            answer.stderr
        )
        assert _user_show(user, service, "ActiveState") == "active"
        assert int(_user_show(user, service, "MainPID")) == c.state()["pid"]
    finally:
        _stop_user_units(user, service, socket_unit)
    wait_for(lambda: not (state_root(user) / c.id).exists())

    ready = _ready_bundle(sandbox, make)
    service = f"oci-container@{ready.id}.service"
    try:
        _start_waits_for_ready(user, service)
        # The program's own READY=1, from the service's main process: the container's init.
        assert int(_user_show(user, service, "MainPID")) == ready.state()["pid"]
    finally:
        _stop_user_units(user, service)
    wait_for(lambda: not (state_root(user) / ready.id).exists())


def test_user_unit_mode_without_delegate_leaves_nothing(
    user: UserSession, user_units: str, make: Callable[..., UserContainer]
) -> None:
    """systemd 252's user manager marks no cgroup user.delegate=1: Delegate= is asked over the
    bus, after the idler exists, and the refusal must take it away again."""
    c = make(["true"])
    service = f"oci-container@{c.id}.service"
    dropin = user.sandbox.host_path(f"{user.runtime_dir}/systemd/user/{service}.d")
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "50-test.conf").write_text("[Service]\nDelegate=no\nRestart=no\n")
    try:
        _systemctl_user(user, "daemon-reload")
        started = user.run(
            ["systemctl", "--user", "start", service],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert started.returncode != 0
        assert "has no Delegate=yes" in _user_unit_journal(user, service)
        assert _user_show(user, service, "ActiveState") == "failed"
        assert not (state_root(user) / c.id).exists()
        assert c.id not in user.sandbox.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    finally:
        _stop_user_units(user, service)
        shutil.rmtree(dropin, ignore_errors=True)
        _systemctl_user(user, "daemon-reload")


# -- the user's journal ------------------------------------------------------------------------


def _user_journal(user: UserSession, *args: str) -> list[dict[str, Any]]:
    """journalctl run by the user (-o json): what its own journal files let it read."""
    argv = ["journalctl", "--no-pager", "-o", "json", *args]
    proc = user.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _ours(entries: list[dict[str, Any]], cid: str) -> dict[str, str]:
    """MESSAGE_ID -> MESSAGE of the container's lifecycle entries among `entries`."""
    return {
        e["MESSAGE_ID"]: e["MESSAGE"] for e in entries if e.get("CONTAINER_ID") == cid and "MESSAGE_ID" in e
    }


@pytest.mark.skipif(bool(os.environ.get("OCI_RUNTIME")), reason="oci-systemd's own journal entries")
def test_user_unit_lifecycle_reaches_the_users_journal(
    sandbox: Sandbox, user: UserSession, user_units: str, make: Callable[..., UserContainer]
) -> None:
    """journald keeps a user's entries in user-UID.journal (the sandbox's journal is persistent
    for that), readable by the user alone: `journalctl --user -u` shows the unit's lifecycle and
    the program's output, and root's containers stay out of the user's sight."""
    _, root_id = bundles.run_and_get_output(sandbox, bundles.base_config(), ["true"])
    c = make(
        ["sh", "-c", 'echo "hello from $0"; trap "exit 0" TERM; while :; do sleep 0.1; done', "user-unit"]
    )
    service, scope = f"oci-scope@{c.id}.service", f"oci-systemd-{c.id}.scope"
    try:
        _systemctl_user(user, "start", service)
        # The line is the container's (its writer is in the scope); wait before stopping it.
        wait_for(
            lambda: any(
                e.get("MESSAGE") == "hello from user-unit"
                for e in _user_journal(user, "--user", "-u", scope)
            )
        )
        _systemctl_user(user, "stop", service)
    finally:
        user.run(["systemctl", "--user", "stop", service], capture_output=True, timeout=60, check=False)
    sandbox.run(["journalctl", "--sync"], check=True)
    lifecycle = {MESSAGE_IDS[event] for event in ("created", "started", "exited", "deleted")}
    # The runtime runs in the service: journald names it by _SYSTEMD_USER_UNIT.
    assert lifecycle <= _ours(_user_journal(user, "--user", "-u", service), c.id).keys()
    # The scope is named by USER_UNIT=, what `--user -u` matches with the user's own _UID.
    in_scope = _user_journal(user, "--user", "-u", scope)
    assert lifecycle <= _ours(in_scope, c.id).keys()
    assert "hello from user-unit" in {e.get("MESSAGE") for e in in_scope}

    # Root's container is in the system journal (root sees it), which the user cannot read:
    # even without --user, the user sees only entries of its own uid.
    assert _ours(_journal(sandbox, f"CONTAINER_ID={root_id}"), root_id)
    assert _user_journal(user, f"CONTAINER_ID={root_id}") == []
    everything = _user_journal(user)
    assert {e["_UID"] for e in everything} == {str(user.uid)}
    assert _ours(everything, c.id) and not _ours(everything, root_id)


@pytest.mark.skipif(bool(os.environ.get("OCI_RUNTIME")), reason="oci-systemd's own journal entries")
def test_forwarded_output_reaches_the_users_journal(
    sandbox: Sandbox, user: UserSession, make: Callable[..., UserContainer]
) -> None:
    """The journald annotation for a user's container: the forwarder's entries are the user's
    to read, under the scope. The forwarder is in the scope, so journald names it; USER_UNIT=
    still names the scope when the forwarder has exited before journald reads its last lines."""

    def to_journal(conf: dict[str, Any]) -> None:
        conf["annotations"] = {"io.github.oci-systemd.log": "journald"}

    c = make(["sh", "-c", "echo to-stdout; echo to-stderr >&2"], to_journal)
    proc = c.rt("run", "--bundle", c.bundle, c.id)
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    sandbox.run(["journalctl", "--sync"], check=True)
    shown = _user_journal(user, "--user", "-u", c.scope, f"CONTAINER_ID={c.id}")
    lines = {e.get("MESSAGE"): e for e in shown if "OCI_STREAM" in e}
    assert lines["to-stdout"]["OCI_STREAM"] == "stdout" and lines["to-stderr"]["PRIORITY"] == "3", shown
    assert lines["to-stdout"]["USER_UNIT"] == c.scope
