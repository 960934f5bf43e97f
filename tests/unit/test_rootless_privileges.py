# SPDX-License-Identifier: Apache-2.0
"""rootless_privileges.py: what of a user's config needs privileges the user lacks, refused at
create before anything exists.

The euid is faked and the capabilities are taken away (monkeypatched), so these run as root and
as a user alike; tests/integration/test_rootless.py runs the same configs as a throw-away user.
"""

from __future__ import annotations

import copy
import os
import resource
from collections.abc import Callable
from typing import Any

import pytest

from oci_systemd.container import config
from oci_systemd.errors import OciSystemdError
from oci_systemd.runtime import rootless, rootless_policy, rootless_privileges
from oci_systemd.runtime.default_config import default_config

UID = 1234


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: UID)
    monkeypatch.setattr(os, "getegid", lambda: UID)
    monkeypatch.setattr(rootless_privileges, "capable", lambda *names: False)


@pytest.fixture
def spec(as_user: None) -> config.Config:
    """`spec --rootless` of user UID: its own uid and gid mapped to 0."""
    return default_config(rootless=True, cgroup2=True)


def edited(cfg: config.Config, edit: Callable[[dict[str, Any]], None]) -> config.Config:
    """A copy of `cfg` with `edit` applied."""
    out: Any = copy.deepcopy(cfg)
    edit(out)
    result: config.Config = out
    return result


def test_spec_rootless_passes(spec: config.Config) -> None:
    rootless_policy.check_config(spec)


Edit = Callable[[dict[str, Any]], None]


def _set(section: str, **values: Any) -> Edit:
    """`section` ("linux", "process", "process.user") updated with `values`."""

    def edit(c: dict[str, Any]) -> None:
        node = c
        for name in section.split("."):
            node = node[name]
        node.update(values)

    return edit


def _namespaces(*, drop: str = "", add: tuple[dict[str, str], ...] = ()) -> Edit:
    def edit(c: dict[str, Any]) -> None:
        c["linux"]["namespaces"] = [*(n for n in c["linux"]["namespaces"] if n["type"] != drop), *add]

    return edit


def _mount(entry: dict[str, Any]) -> Edit:
    """Add `entry`, or put it in the place of the mount with its destination."""

    def edit(c: dict[str, Any]) -> None:
        dests = [m["destination"] for m in c["mounts"]]
        if entry["destination"] in dests:
            c["mounts"][dests.index(entry["destination"])] = entry
        else:
            c["mounts"].append(entry)

    return edit


def _all(*edits: Edit) -> Edit:
    def edit(c: dict[str, Any]) -> None:
        for one in edits:
            one(c)

    return edit


NO_DEV = {"path": "/nonexistent/dev", "type": "c", "major": 1}
REFUSED: list[Any] = [
    pytest.param(
        _set("linux", devices=[NO_DEV]),
        r"linux\.devices\[0\]: /nonexistent/dev: a user namespace cannot make device nodes",
        id="device-the-host-lacks",
    ),
    pytest.param(
        _set("linux", netDevices={"eth0": {"name": "net0"}}),
        r"linux\.netDevices: moving the host's network device 'eth0' .* needs CAP_NET_ADMIN",
        id="net-devices",
    ),
    pytest.param(
        _set("linux", sysctl={"kernel.hostname": "x"}),
        r"linux\.sysctl 'kernel\.hostname': /proc/sys/kernel/hostname belongs to root",
        id="uts-sysctl",
    ),
    pytest.param(
        _set("linux", sysctl={"net.ipv4.ip_forward": "1"}),
        r"sysctl 'net\.ipv4\.ip_forward' is not allowed in the host's network namespace",
        id="sysctl-without-its-namespace",
    ),
    pytest.param(
        _set("process", ioPriority={"class": "IOPRIO_CLASS_RT", "priority": 1}),
        r"process\.ioPriority: IOPRIO_CLASS_RT needs CAP_SYS_ADMIN or CAP_SYS_NICE",
        id="io-priority-rt",
    ),
    pytest.param(
        _set("linux", intelRdt={"closID": "x"}),
        r"linux\.intelRdt: only root may write the resctrl filesystem",
        id="intel-rdt",
    ),
    pytest.param(
        _namespaces(drop="pid"),
        r"mounts\[0\]: proc on /proc needs the container's own pid namespace",
        id="proc-without-pid-namespace",
    ),
    pytest.param(
        _namespaces(drop="ipc"),
        r"mounts\[4\]: mqueue on /dev/mqueue needs the container's own ipc namespace",
        id="mqueue-without-ipc-namespace",
    ),
    pytest.param(
        _namespaces(drop="pid", add=({"type": "pid", "path": "/proc/1/ns/pid"},)),
        r"linux\.namespaces\[\d\]: joining the pid namespace /proc/1/ns/pid needs CAP_SYS_ADMIN",
        id="a-joined-namespace-without-its-user-namespace",
    ),
    pytest.param(
        _mount({"destination": "/m", "type": "tmpfs", "options": ["gid=5"]}),
        r"option gid=5 on /m: container gid 5 is not mapped \(linux\.gidMappings has 0-0\)",
        id="mount-option-of-an-unmapped-gid",
    ),
    pytest.param(
        _set("process.user", gid=7),
        r"process\.user\.gid 7 is not mapped \(linux\.gidMappings has 0-0\)",
        id="unmapped-process-gid",
    ),
    pytest.param(
        _set("process.user", additionalGids=[0]),
        rf"setgroups\(2\) is denied in a user namespace whose gid map is only your own gid {UID}",
        id="additional-gids-with-the-own-gid-map",
    ),
]


@pytest.mark.parametrize(("edit", "message"), REFUSED)
def test_what_needs_privileges_is_refused_naming_the_field(
    spec: config.Config, edit: Edit, message: str
) -> None:
    with pytest.raises(OciSystemdError, match=message) as caught:
        rootless_policy.check_config(edited(spec, edit))
    assert caught.value.hint is not None


def _joined_user_namespace(c: dict[str, Any]) -> None:
    _namespaces(drop="user", add=({"type": "user", "path": "/proc/1/ns/user"},))(c)
    del c["linux"]["uidMappings"], c["linux"]["gidMappings"]


HOST_DEV = {"destination": "/dev", "type": "none", "source": "/dev", "options": ["rbind"]}
ACCEPTED: list[Any] = [
    pytest.param(
        _set("linux", devices=[{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]),
        id="device-the-host-has",
    ),
    pytest.param(
        _set("linux", devices=[{"path": "/nonexistent/fifo", "type": "p"}]), id="fifo-made-with-mknod"
    ),
    pytest.param(_all(_mount(HOST_DEV), _set("linux", devices=[NO_DEV])), id="devices-under-the-hosts-dev"),
    pytest.param(_set("linux", sysctl={"kernel.shmmax": "1", "fs.mqueue.msg_max": "20"}), id="ipc-sysctls"),
    pytest.param(
        _all(_namespaces(add=({"type": "network"},)), _set("linux", sysctl={"net.ipv4.ip_forward": "1"})),
        id="net-sysctl-of-its-own-network-namespace",
    ),
    pytest.param(
        _set("process", ioPriority={"class": "IOPRIO_CLASS_IDLE", "priority": 7}), id="io-priority-idle"
    ),
    pytest.param(
        _all(
            _namespaces(drop="pid"),
            _mount({"destination": "/proc", "type": "none", "source": "/proc", "options": ["rbind"]}),
        ),
        id="proc-bound-without-pid-namespace",
    ),
    pytest.param(
        _mount({"destination": "/m", "type": "tmpfs", "options": ["uid=0", "mode=755"]}),
        id="mount-option-of-a-mapped-uid",
    ),
    pytest.param(
        _all(_joined_user_namespace, _namespaces(add=({"type": "network", "path": "/proc/1/ns/net"},))),
        id="namespaces-joined-with-their-user-namespace",  # the kernel checks the rest
    ),
]


@pytest.mark.parametrize("edit", ACCEPTED)
def test_what_a_user_namespace_allows_passes(spec: config.Config, edit: Edit) -> None:
    rootless_policy.check_config(edited(spec, edit))


def test_additional_gids_need_a_subgid_range_through_newgidmap(
    spec: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rootless_policy, "subordinate_ranges", lambda kind: [(100000, 65536)])
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    ranges = [
        {"containerID": 0, "hostID": UID, "size": 1},
        {"containerID": 1, "hostID": 100000, "size": 65536},
    ]
    cfg = edited(spec, lambda c: c["linux"].update(uidMappings=ranges, gidMappings=ranges))
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 65536]}
    rootless_policy.check_config(cfg)
    cfg["process"]["user"]["additionalGids"] = [65537]
    with pytest.raises(rootless.RootlessError, match="additionalGids: gid 65537 is not mapped"):
        rootless_policy.check_config(cfg)


def test_a_hard_limit_above_the_runtimes_own_is_refused(spec: config.Config) -> None:
    own = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if own == resource.RLIM_INFINITY:
        pytest.skip("this process's hard RLIMIT_NOFILE is unlimited")
    cfg = spec
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": own, "soft": 1}]
    rootless_policy.check_config(cfg)
    for hard in (own + 1, 2**64 - 1):
        cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": hard, "soft": 1}]
        with pytest.raises(
            rootless.RootlessError, match=rf"hard limit {hard} is above the runtime's own \({own}\)"
        ):
            rootless_policy.check_config(cfg)


def test_held_capabilities_leave_it_to_the_kernel(
    spec: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's runtime with file capabilities: CAP_NET_ADMIN moves devices, CAP_SYS_NICE sets RT I/O."""
    monkeypatch.setattr(rootless_privileges, "capable", lambda *names: True)
    cfg = edited(spec, lambda c: c["linux"].update(netDevices={"eth0": {}}))
    cfg["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_RT", "priority": 0}
    rootless_policy.check_config(cfg)


def test_capable_reads_the_effective_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    status = tmp_path / "status"
    status.write_text(
        "Name:\tx\nCapPrm:\t0000000000001000\nCapEff:\t0000000000001000\n"
    )  # CAP_NET_ADMIN only
    real_open = open

    def fake_open(path: Any, *args: Any, **kw: Any) -> Any:
        return real_open(status if path == "/proc/self/status" else path, *args, **kw)

    monkeypatch.setattr("builtins.open", fake_open)
    assert rootless_privileges.capable("CAP_NET_ADMIN")
    assert not rootless_privileges.capable("CAP_SYS_ADMIN", "CAP_SYS_NICE")
