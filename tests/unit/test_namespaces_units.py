# SPDX-License-Identifier: Apache-2.0
"""namespaces.enter() ordering with a recording fake of the syscalls (no privileges needed)."""

import errno
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from oci_systemd.container import linux, namespaces
from oci_systemd.errors import OciSystemdError, SyscallError

if TYPE_CHECKING:
    from oci_systemd.container import config


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    rec: list[tuple[Any, ...]] = []
    monkeypatch.setattr(linux, "unshare", lambda flags: rec.append(("unshare", flags)))
    monkeypatch.setattr(
        linux, "setns", lambda fd, nstype, target=None: rec.append(("setns", nstype, target))
    )
    monkeypatch.setattr(namespaces, "become_root", lambda: rec.append(("become_root",)))
    return rec


def test_new_namespaces_one_unshare(calls: list[tuple[Any, ...]]) -> None:
    types = ("pid", "network", "ipc", "uts", "mount", "cgroup", "user")
    res = namespaces.enter([{"type": t} for t in types])
    assert calls == [
        (
            "unshare",
            linux.CLONE_NEWPID
            | linux.CLONE_NEWNET
            | linux.CLONE_NEWIPC
            | linux.CLONE_NEWUTS
            | linux.CLONE_NEWNS
            | linux.CLONE_NEWUSER,
        )
    ]
    assert res.needs_fork and res.new_user_ns and res.new_net_ns and res.cgroup_pending
    assert res.joined == 0


def test_user_ns_first_with_sync(calls: list[tuple[Any, ...]]) -> None:
    synced: list[bool] = []
    namespaces.enter(
        [{"type": "mount"}, {"type": "user"}, {"type": "uts"}], sync_user_ns=lambda: synced.append(True)
    )
    assert calls == [
        ("unshare", linux.CLONE_NEWUSER),
        ("become_root",),
        ("unshare", linux.CLONE_NEWNS | linux.CLONE_NEWUTS),
    ]
    assert synced == [True]


def test_join_user_first_mount_last_then_unshare(calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    paths = {}
    for t in ("mount", "network", "user"):
        paths[t] = tmp_path / t
        paths[t].write_text("")
    res = namespaces.enter(
        [
            {"type": "mount", "path": str(paths["mount"])},
            {"type": "network", "path": str(paths["network"])},
            {"type": "user", "path": str(paths["user"])},
            {"type": "pid"},
            {"type": "time"},
        ]
    )
    assert calls == [
        ("setns", linux.CLONE_NEWUSER, str(paths["user"])),
        ("setns", linux.CLONE_NEWNET, str(paths["network"])),
        ("setns", linux.CLONE_NEWNS, str(paths["mount"])),
        ("unshare", linux.CLONE_NEWPID | linux.CLONE_NEWTIME),
    ]
    assert res.needs_fork and not res.new_user_ns and not res.cgroup_pending


def test_joined_pid_ns_needs_fork(calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    p = tmp_path / "pid"
    p.write_text("")
    assert namespaces.enter([{"type": "pid", "path": str(p)}]).needs_fork
    assert not namespaces.enter([{"type": "uts"}]).needs_fork


def test_errors_name_namespace_and_path(calls: list[tuple[Any, ...]]) -> None:
    with pytest.raises(SyscallError) as info:
        namespaces.enter([{"type": "network", "path": "/proc/999999999/ns/net"}])
    assert str(info.value) == "open network namespace `/proc/999999999/ns/net`: no such file or directory"
    with pytest.raises(OciSystemdError, match="unknown namespace type"):
        namespaces.enter([{"type": "bogus"}])


def test_setns_error_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = tmp_path / "net"
    p.write_text("")

    def fail(fd: int, nstype: int, target: str | None = None) -> None:
        raise SyscallError("setns", target, 22)

    monkeypatch.setattr(linux, "setns", fail)
    with pytest.raises(SyscallError) as info:
        namespaces.enter([{"type": "network", "path": str(p)}])
    assert str(info.value) == f"join network namespace `{p}`: invalid argument"


def test_id_map_format() -> None:
    assert namespaces._format_map(
        [
            {"containerID": 0, "hostID": 100000, "size": 65536},
            {"containerID": 65536, "hostID": 1000, "size": 1},
        ]
    ) == ("0 100000 65536\n65536 1000 1\n")


def test_set_hostname_requires_private_uts(monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[str] = []
    monkeypatch.setattr(linux, "sethostname", got.append)
    monkeypatch.setattr(linux, "setdomainname", lambda d: got.append("domain:" + d))
    uts: config.Linux = {"namespaces": [{"type": "uts"}]}
    namespaces.set_hostname({"hostname": "box", "domainname": "lan", "linux": uts})
    assert got == ["box", "domain:lan"]
    with pytest.raises(OciSystemdError, match="private UTS namespace"):
        namespaces.set_hostname({"hostname": "box", "linux": {"namespaces": []}})
    namespaces.set_hostname({"linux": {}})  # nothing to do


def test_configured_finds_new_and_joined_namespaces() -> None:
    cfg: config.Config = {
        "linux": {"namespaces": [{"type": "uts", "path": "/proc/9/ns/uts"}, {"type": "mount"}]}
    }
    assert namespaces.configured(cfg, "uts") == {"type": "uts", "path": "/proc/9/ns/uts"}
    assert namespaces.configured(cfg, "mount") == {"type": "mount"}
    assert namespaces.configured(cfg, "user") is None
    assert namespaces.configured({}, "mount") is None


def test_join_session_keyring_adds_runcs_permissions(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []

    def keyctl(op: int, a: object = 0, b: object = 0) -> int:
        calls.append((op, a, b))
        return 0

    monkeypatch.setattr(linux, "keyctl", keyctl)
    monkeypatch.setattr(linux, "keyctl_describe", lambda key: b"keyring;0;0;3f010000;_ses")
    namespaces.join_session_keyring("cid")
    assert calls == [
        (linux.KEYCTL_JOIN_SESSION_KEYRING, b"cid", 0),
        (linux.KEYCTL_SETPERM, linux.KEY_SPEC_SESSION_KEYRING, 0x3F010000 | 0x080B0100),
    ]


def test_join_session_keyring_without_keyctl_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def enosys(op: int, a: object = 0, b: object = 0) -> int:
        raise SyscallError("keyctl", str(op), errno.ENOSYS)

    monkeypatch.setattr(linux, "keyctl", enosys)
    monkeypatch.setattr(linux, "keyctl_describe", lambda key: pytest.fail("described without a keyring"))
    namespaces.join_session_keyring("cid")
