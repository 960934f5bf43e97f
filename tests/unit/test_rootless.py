# SPDX-License-Identifier: Apache-2.0
"""rootless.py, rootless_policy.py and the user's placement: what a user's runtime decides
before it asks anyone.

The euid is faked (monkeypatched os.geteuid/getegid), so these run as root and as a user alike;
tests/integration/test_rootless.py runs the real thing as a throw-away user.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from oci_systemd.errors import OciSystemdError
from oci_systemd.runtime import placement, rootless, rootless_policy
from oci_systemd.runtime.lifecycle import Runtime

UID = 1234


@pytest.fixture
def as_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: UID)
    monkeypatch.setattr(os, "getegid", lambda: UID)
    monkeypatch.delenv(placement.PLACEMENT_ENV, raising=False)


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_user: None) -> Path:
    """An XDG_RUNTIME_DIR that the faked user owns (stat's st_uid faked to match)."""
    real_stat = os.stat

    def stat(path: str, *args: object, **kw: object) -> os.stat_result:
        st = real_stat(path, *args, **kw)  # type: ignore[arg-type]
        if os.fspath(path) == str(tmp_path):
            fields = list(st)
            fields[4] = UID  # st_uid
            return os.stat_result(fields)
        return st

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    return tmp_path


def test_root_keeps_the_system_root_and_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert rootless.state_root(rootless.SYSTEM_ROOT) == rootless.SYSTEM_ROOT
    assert rootless.bus_address() is None


def test_a_user_defaults_to_its_runtime_dir_and_user_bus(runtime_dir: Path) -> None:
    assert rootless.state_root(rootless.SYSTEM_ROOT) == str(runtime_dir / "oci-systemd")
    assert rootless.bus_address() == f"unix:path={runtime_dir}/bus"
    rt = Runtime(rootless.SYSTEM_ROOT)
    assert rt.store.root == str(runtime_dir / "oci-systemd")
    assert rt.store.mode == 0o700


def test_the_session_bus_address_wins(runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/somewhere/bus")
    assert rootless.bus_address() == "unix:path=/somewhere/bus"


def test_an_explicit_root_wins(runtime_dir: Path, tmp_path: Path) -> None:
    assert rootless.state_root(str(tmp_path / "mine")) == str(tmp_path / "mine")


def test_no_runtime_dir_is_a_clear_error(as_user: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with pytest.raises(rootless.RootlessError, match="XDG_RUNTIME_DIR is not set"):
        Runtime(rootless.SYSTEM_ROOT)
    with pytest.raises(rootless.RootlessError, match="XDG_RUNTIME_DIR is not set") as caught:
        rootless.bus_address()
    assert caught.value.hint is not None and "DBUS_SESSION_BUS_ADDRESS" in caught.value.hint


def test_a_runtime_dir_of_another_user_is_refused(
    as_user: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # owned by the real uid, not UID
    with pytest.raises(rootless.RootlessError, match=f"not by uid {UID}"):
        rootless.state_root(rootless.SYSTEM_ROOT)


def test_a_user_gets_a_user_scope_in_app_slice(as_user: None) -> None:
    chosen = placement.choose_placement()
    assert chosen.kind == placement.USER_SCOPE
    assert chosen.unit_for("c1", None) == ("oci-systemd-c1.scope", "app.slice")
    assert chosen.unit_for("c1", "mine.slice:libpod:c1") == ("libpod-c1.scope", "mine.slice")
    assert chosen.unit_for("c1", ":libpod:c1") == ("libpod-c1.scope", "app.slice")
    assert placement.placement_of({"placement": "user-scope"}) is chosen


def test_a_users_unit_mode_is_in_the_users_manager(as_user: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(placement.PLACEMENT_ENV, "service")
    chosen = placement.choose_placement(run=True)
    assert chosen.kind == placement.USER_SERVICE and chosen.hands_over
    assert placement.placement_of({"placement": "user-service"}) is chosen
    with pytest.raises(Exception, match="is for `oci-systemd run`"):
        placement.choose_placement()


def test_own_id_maps_are_fine(as_user: None) -> None:
    rootless_policy.check_mappings("uid", [{"containerID": 0, "hostID": UID, "size": 1}])
    rootless_policy.check_mappings("gid", [{"containerID": 1000, "hostID": UID, "size": 1}])


@pytest.mark.parametrize(
    "mapping",
    [
        {"containerID": 0, "hostID": 0, "size": 1},  # root's
        {"containerID": 0, "hostID": UID, "size": 2},  # one more than our own
        {"containerID": 0, "hostID": 100000, "size": 65536},  # a range we do not have
    ],
)
def test_maps_outside_our_ids_name_what_is_missing(as_user: None, mapping: dict[str, int]) -> None:
    with pytest.raises(rootless.RootlessError, match=f"outside what uid {UID} may map"):
        rootless_policy.check_mappings("uid", [mapping])  # type: ignore[list-item]


def test_no_maps_at_all_is_refused(as_user: None) -> None:
    with pytest.raises(rootless.RootlessError, match=r"linux\.gidMappings is empty"):
        rootless_policy.check_mappings("gid", [])


def test_a_subuid_range_needs_newuidmap(as_user: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless_policy, "subordinate_ranges", lambda kind: [(100000, 65536)])
    maps = [
        {"containerID": 0, "hostID": UID, "size": 1},
        {"containerID": 1, "hostID": 100000, "size": 65536},
    ]
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(rootless.RootlessError, match="needs newuidmap, which is not installed"):
        rootless_policy.check_mappings("uid", maps)  # type: ignore[arg-type]
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    rootless_policy.check_mappings("uid", maps)  # type: ignore[arg-type]


def test_subordinate_ranges_are_read_by_name_or_id(as_user: None, tmp_path: Path) -> None:
    subuid = tmp_path / "subuid"
    subuid.write_text(f"someone:200000:10\n{UID}:100000:65536\nbroken\n")
    assert rootless_policy.subordinate_ranges("uid", path=str(subuid)) == [(100000, 65536)]


def test_a_config_without_a_user_namespace_is_refused(as_user: None) -> None:
    with pytest.raises(rootless.RootlessError, match="needs a user namespace"):
        rootless_policy.check_config({"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}})


def test_limits_only_for_delegated_controllers() -> None:
    props = [
        ("MemoryMax", "t", 1 << 20),
        ("TasksMax", "t", 10),
        ("CPUWeight", "t", 100),
        ("DevicePolicy", "s", "strict"),
        ("Delegate", "b", True),
    ]
    kept, dropped = rootless_policy.delegated_properties(props, frozenset({"memory", "pids"}))
    assert [p[0] for p in kept] == ["MemoryMax", "TasksMax", "Delegate"]
    assert dropped == ["CPUWeight"]  # device rules go without a warning


def test_the_managers_controllers_are_read_from_its_cgroup(tmp_path: Path) -> None:
    cg = tmp_path / "user.slice" / "user@1.service"
    cg.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("memory pids\n")
    assert rootless_policy.manager_controllers("/user.slice/user@1.service", mount=str(tmp_path)) == {
        "memory",
        "pids",
    }
    assert rootless_policy.manager_controllers("/elsewhere", mount=str(tmp_path)) == frozenset()
    assert rootless_policy.manager_controllers("/user.slice/user@1.service", mount=None) == frozenset()


def test_own_ids_are_written_directly_after_denying_setgroups(
    as_user: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oci_systemd.container import namespaces

    writes: list[tuple[str, str]] = []
    monkeypatch.setattr(namespaces, "_write_proc", lambda path, data: writes.append((path, data)))
    own = [{"containerID": 0, "hostID": UID, "size": 1}]
    namespaces.write_id_maps(42, own, own)  # type: ignore[arg-type]
    assert writes == [
        ("/proc/42/uid_map", f"0 {UID} 1\n"),
        ("/proc/42/setgroups", "deny"),
        ("/proc/42/gid_map", f"0 {UID} 1\n"),
    ]


def test_subordinate_ranges_go_to_the_helpers_with_setgroups_untouched(
    as_user: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """newgidmap decides about setgroups itself: a `deny` written before would make it fail."""
    from oci_systemd.container import namespaces

    writes: list[str] = []
    helped: list[tuple[str, int]] = []
    monkeypatch.setattr(namespaces, "_write_proc", lambda path, data: writes.append(path))

    def helper(kind: str, pid: int, maps: object) -> bool:
        helped.append((kind, pid))
        return True

    monkeypatch.setattr(namespaces, "_map_with_helper", helper)
    ranges = [
        {"containerID": 0, "hostID": UID, "size": 1},
        {"containerID": 1, "hostID": 100000, "size": 65536},
    ]
    namespaces.write_id_maps(42, ranges, ranges)  # type: ignore[arg-type]
    assert (writes, helped) == ([], [("uid", 42), ("gid", 42)])
    monkeypatch.setattr(namespaces, "_map_with_helper", lambda kind, pid, maps: False)
    with pytest.raises(Exception, match="needs newuidmap, which is not installed"):
        namespaces.write_id_maps(42, ranges, ranges)  # type: ignore[arg-type]


def test_root_of_a_user_namespace_is_rootless_unless_pid1_is_in_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rootless podman's namespace (the host's PID 1 is not in it) against an unprivileged
    LXC container's (its own systemd is PID 1 in it): only the first uses the user's manager."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(rootless, "in_user_namespace", lambda: True)
    monkeypatch.setattr(rootless, "_pid1_is_ours", lambda: False)
    assert rootless.is_rootless()
    monkeypatch.setattr(rootless, "_pid1_is_ours", lambda: True)
    assert not rootless.is_rootless()
    monkeypatch.setattr(rootless, "in_user_namespace", lambda: False)
    assert not rootless.is_rootless()


def test_features_report_the_user_managers_cgroups() -> None:
    """runtime-spec features: systemdUser, the user-scoped systemd driver (UserScope)."""
    from oci_systemd.runtime.features import features

    assert features()["linux"]["cgroup"]["systemdUser"] is True


@pytest.mark.parametrize("value", ["auto", "AUTO", "", "true", "1", "T", "TRUE"])
def test_rootless_flag_agreeing_with_a_user_is_accepted(as_user: None, value: str) -> None:
    rootless.check_flag(value)


def test_rootless_flag_false_for_a_user_is_refused(as_user: None) -> None:
    with pytest.raises(OciSystemdError, match="an unprivileged caller live in its own user manager"):
        rootless.check_flag("false")


@pytest.mark.skipif(rootless.is_rootless(), reason="checks root's side")
def test_rootless_flag_for_root() -> None:
    rootless.check_flag("false")
    rootless.check_flag("f")
    with pytest.raises(OciSystemdError, match=r"--rootless=true: the containers of root live in"):
        rootless.check_flag("true")


@pytest.mark.parametrize("value", ["bogus", "yes", "tRuE", "2"])
def test_rootless_flag_invalid(value: str) -> None:
    """Go's strconv.ParseBool spellings only, as runc's create parses them."""
    with pytest.raises(OciSystemdError, match="invalid --rootless value"):
        rootless.check_flag(value)
