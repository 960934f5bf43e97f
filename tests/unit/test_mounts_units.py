# SPDX-License-Identifier: Apache-2.0
"""Mount option parsing and path resolution inside a root (no root needed)."""

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from oci_systemd.container import linux, mounts, namespaces
from oci_systemd.container.mounts import dev, masked, resolve, rootfs
from oci_systemd.errors import OciSystemdError, SyscallError

if TYPE_CHECKING:
    from oci_systemd.container import config


def test_parse_options_flags_data_and_propagation() -> None:
    o = mounts.parse_options(["nosuid", "noexec", "nodev", "mode=1777", "size=65536k", "rslave", "ro"])
    assert o.flags == linux.MS_NOSUID | linux.MS_NOEXEC | linux.MS_NODEV | linux.MS_RDONLY
    assert o.data == "mode=1777,size=65536k"
    assert o.propagation == [linux.MS_SLAVE | linux.MS_REC]


@pytest.mark.parametrize(
    ("options", "flags"),
    [
        (["ro", "rw"], 0),
        (["rw", "ro"], linux.MS_RDONLY),
        (["rbind"], linux.MS_BIND | linux.MS_REC),
        (["bind", "remount", "ro"], linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY),
        (["noatime", "atime"], 0),
        (["relatime", "strictatime"], linux.MS_RELATIME | linux.MS_STRICTATIME),
        (["relatime", "norelatime", "nostrictatime"], 0),
        (
            ["nodiratime", "diratime", "dirsync", "sync", "mand"],
            linux.MS_DIRSYNC | linux.MS_SYNCHRONOUS | linux.MS_MANDLOCK,
        ),
        (["nosuid", "suid", "nodev", "dev", "noexec", "exec"], 0),
        (["defaults"], 0),
    ],
)
def test_option_flags(options: list[str], flags: int) -> None:
    assert mounts.parse_options(options).flags == flags


def test_all_propagation_options() -> None:
    names = ["shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable"]
    o = mounts.parse_options(names)
    assert o.propagation == [mounts.PROPAGATION_FLAGS[n] for n in names]
    assert o.flags == 0 and o.data == ""


def test_unsupported_options_are_refused() -> None:
    with pytest.raises(OciSystemdError, match="rro"):
        mounts.parse_options(["rro"])


def test_idmap_options_are_not_mount_data() -> None:
    """idmap/ridmap are done by idmap.py, never passed to mount(2) as data."""
    opts = mounts.parse_options(["bind", "idmap", "ridmap", "ro"])
    assert opts.data == "" and opts.flags & linux.MS_RDONLY


def test_sysctl_path() -> None:
    assert mounts.sysctl_path("net.ipv4.ip_forward") == "net/ipv4/ip_forward"
    assert mounts.sysctl_path("net/ipv4/conf/eth0.100/forwarding") == "net/ipv4/conf/eth0.100/forwarding"
    for bad in ("net..x", "../x", "/abs", "a/../b", ""):
        with pytest.raises(OciSystemdError):
            mounts.sysctl_path(bad)


@pytest.mark.parametrize(
    ("key", "namespaces", "error"),
    [
        ("net.ipv4.ip_forward", ["network"], None),
        ("net/ipv4/conf/eth0.100/forwarding", ["network"], None),
        ("kernel.msgmax", ["ipc"], None),
        ("fs.mqueue.msg_max", ["ipc"], None),
        ("kernel.domainname", ["uts"], None),
        ("net.ipv4.ip_forward", ["ipc", "uts"], "host's network namespace"),
        ("kernel.shmmax", ["network"], "host's ipc namespace"),
        ("kernel.domainname", ["network"], "host's uts namespace"),
        ("vm.overcommit_memory", ["network", "ipc", "uts"], "not in a separate kernel namespace"),
        ("kernel.core_pattern", ["network", "ipc", "uts"], "not in a separate kernel namespace"),
    ],
)
def test_check_sysctls(key: str, namespaces: list[str], error: str | None) -> None:
    cfg: config.Config = {"linux": {"namespaces": [{"type": t} for t in namespaces], "sysctl": {key: "1"}}}
    if error is None:
        mounts.check_sysctls(cfg)
    else:
        with pytest.raises(OciSystemdError, match=error):
            mounts.check_sysctls(cfg)


def test_check_sysctls_refuses_a_joined_namespace_that_is_pid_1s(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg: config.Config = {
        "linux": {"namespaces": [{"type": "network", "path": "/x"}], "sysctl": {"net.core.somaxconn": "1"}}
    }
    monkeypatch.setattr(namespaces, "same_ns", lambda kind, pid: True)
    with pytest.raises(OciSystemdError, match="host's network namespace"):
        mounts.check_sysctls(cfg)
    monkeypatch.setattr(namespaces, "same_ns", lambda kind, pid: False)
    mounts.check_sysctls(cfg)


def test_needs_dev_setup() -> None:
    assert mounts.needs_dev_setup({"mounts": [{"destination": "/dev", "type": "tmpfs"}]})
    assert not mounts.needs_dev_setup(
        {"mounts": [{"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}]}
    )
    assert mounts.needs_dev_setup({})


def test_mountinfo_unescape() -> None:
    assert rootfs._unescape_mountinfo(r"/a\040b\134c") == "/a b\\c"


# --- resolution inside a hostile root -------------------------------------------------------------
@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A root full of symlinks that point outside it, plus a canary outside."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("outside")
    (root / "abs").symlink_to(os.fspath(tmp_path / "outside"))
    (root / "dotdot").symlink_to("../../../../outside")
    (root / "dotdot2").symlink_to("../outside")
    (root / "etcabs").symlink_to("/etc")
    (root / "loop").symlink_to("loop")
    (root / "dangling").symlink_to("/newdir/sub")
    (root / "proc-self").symlink_to("/proc/self/root")
    return root


@pytest.fixture(params=["openat2", "fallback"])
def resolver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "fallback":
        monkeypatch.setattr(resolve, "_openat2_works", False)
    else:
        monkeypatch.setattr(resolve, "_openat2_works", None)
    yield request.param


def _real(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def test_secure_join_stays_inside(hostile: Path) -> None:
    r = os.fspath(hostile)
    outside_in_root = os.path.join(r, hostile.parent.relative_to("/"), "outside/secret")
    assert mounts.secure_join(r, "/abs/secret") == outside_in_root
    assert mounts.secure_join(r, "dotdot/secret") == f"{r}/outside/secret"
    assert mounts.secure_join(r, "dotdot2/secret") == f"{r}/outside/secret"
    assert mounts.secure_join(r, "../../etc/passwd") == f"{r}/etc/passwd"
    assert mounts.secure_join(r, "etcabs/passwd") == f"{r}/etc/passwd"
    assert mounts.secure_join(r, "dangling/x") == f"{r}/newdir/sub/x"
    with pytest.raises(SyscallError) as info:
        mounts.secure_join(r, "loop/x")
    assert info.value.errno == errno.ELOOP


@pytest.mark.usefixtures("resolver")
def test_open_in_root_never_escapes(hostile: Path) -> None:
    r = os.fspath(hostile)
    root_fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    try:
        assert _real(mounts.open_in_root(root_fd, r, "/etcabs/passwd")) == f"{r}/etc/passwd"
        assert _real(mounts.open_in_root(root_fd, r, "../../etc/passwd")) == f"{r}/etc/passwd"
        for escape in ("dotdot/secret", "dotdot2/secret", "abs/secret"):
            with pytest.raises((FileNotFoundError, SyscallError)):
                mounts.open_in_root(root_fd, r, escape)
    finally:
        os.close(root_fd)


@pytest.mark.usefixtures("resolver")
def test_mkdest_creates_inside(hostile: Path) -> None:
    r = os.fspath(hostile)
    outside = hostile.parent / "outside"
    root_fd = os.open(r, os.O_PATH | os.O_DIRECTORY)
    try:
        assert _real(mounts.mkdest_in_root(root_fd, r, "/dotdot/new", directory=True)) == f"{r}/outside/new"
        assert _real(mounts.mkdest_in_root(root_fd, r, "/abs/file", directory=False)).startswith(r + "/")
        assert _real(mounts.mkdest_in_root(root_fd, r, "/dangling", directory=True)) == f"{r}/newdir/sub"
        assert (hostile / "outside" / "new").is_dir()
        assert (hostile / "newdir" / "sub").is_dir()
        assert sorted(os.listdir(outside)) == ["secret"]
    finally:
        os.close(root_fd)


def test_walk_refuses_a_swapped_in_symlink(hostile: Path) -> None:
    """The fallback walk opens components with O_NOFOLLOW: a symlink is an error, not a way out."""
    root_fd = os.open(hostile, os.O_PATH | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError):
            resolve.walk(root_fd, "abs/secret")
        with pytest.raises(SyscallError) as info:
            resolve.walk(root_fd, "abs")
        assert info.value.errno == errno.ELOOP
    finally:
        os.close(root_fd)


def test_in_user_namespace_is_decided_by_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    identity: config.IDMapping = {"containerID": 0, "hostID": 0, "size": 4294967295}
    cfg: config.Config = {
        "linux": {"namespaces": [{"type": "user"}], "uidMappings": [identity], "gidMappings": [identity]}
    }
    assert mounts.in_user_namespace(cfg), "a full identity map is still a user namespace"
    assert mounts.in_user_namespace({"linux": {"namespaces": [{"type": "user", "path": "/proc/1/ns/user"}]}})
    real_stat = os.stat
    monkeypatch.setattr(
        os,
        "stat",
        lambda p, *a, **k: (
            os.stat_result((0,) * 1 + (0xEFFFFFFD,) + (0,) * 8)
            if p == "/proc/self/ns/user"
            else real_stat(p, *a, **k)
        ),
    )
    assert not mounts.in_user_namespace({"linux": {"namespaces": [{"type": "mount"}]}})


def test_source_opener_only_for_a_user_namespace_with_binds() -> None:
    bind: config.Mount = {"destination": "/x", "type": "bind", "source": "/tmp", "options": ["bind"]}
    tmpfs: config.Mount = {"destination": "/y", "type": "tmpfs", "source": "tmpfs"}
    ns: list[config.Namespace] = [{"type": "mount"}]
    assert mounts.SourceOpener.start({"linux": {"namespaces": ns}, "mounts": [bind]}, "/b") is None
    userns: list[config.Namespace] = [*ns, {"type": "user"}]
    assert mounts.SourceOpener.start({"linux": {"namespaces": userns}, "mounts": [tmpfs]}, "/b") is None


def test_without_mount_namespace_nothing_is_mounted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Refused before any syscall; and the accepted case never calls mount(2)."""
    calls: list[object] = []
    monkeypatch.setattr(linux, "mount", lambda *a: calls.append(a))
    cfg: config.Config = {
        "linux": {"namespaces": [{"type": "pid"}]},
        "mounts": [{"destination": "/t", "type": "tmpfs"}],
    }
    with pytest.raises(OciSystemdError, match="mounts: requires a mount namespace"):
        mounts.prepare_rootfs(cfg, rootfs=str(tmp_path), bundle=str(tmp_path))
    refused: list[tuple[str, config.Config]] = [
        ("maskedPaths", {"linux": {"maskedPaths": ["x"]}}),
        ("readonlyPaths", {"linux": {"readonlyPaths": ["x"]}}),
        ("rootfsPropagation", {"linux": {"rootfsPropagation": "x"}}),
    ]
    for key, refused_cfg in refused:
        with pytest.raises(OciSystemdError, match=key):
            mounts.prepare_rootfs(refused_cfg, rootfs=str(tmp_path), bundle=str(tmp_path))
    with pytest.raises(OciSystemdError, match="user namespace"):
        mounts.prepare_rootfs(
            {"linux": {"namespaces": [{"type": "user"}]}}, rootfs=str(tmp_path), bundle="/"
        )
    monkeypatch.setattr(dev, "setup_dev", lambda cfg, **kw: calls.append("dev"))
    mounts.prepare_rootfs({"linux": {"namespaces": []}}, rootfs=str(tmp_path), bundle=str(tmp_path))
    mounts.finish_rootfs({"linux": {"namespaces": []}})
    assert calls == ["dev"]


def test_every_known_option_has_a_meaning_and_none_is_refused() -> None:
    """KNOWN_OPTIONS (what spec and features derive from) is exactly what parse_options takes
    itself: never passed on as filesystem data, never refused."""
    for name in sorted(mounts.KNOWN_OPTIONS):
        assert mounts.parse_options([name]).data == "", name
    assert mounts.KNOWN_OPTIONS.isdisjoint(mounts.UNSUPPORTED_OPTIONS)
    assert mounts.parse_options(["tmpcopyup"]).copy_up
    assert mounts.parse_options(["mode=0755", "tmpcopyup"]).data == "mode=0755"


def test_the_package_loads_every_submodule_before_it_is_used() -> None:
    """The idler imports `mounts` before pivot_root and nothing after it (idler.forbid_imports):
    a submodule imported lazily would fail past the pivot."""
    package = Path(mounts.__file__).parent
    code = (
        f"import sys; sys.path.insert(0, {os.fspath(package.parents[2])!r})\n"
        "from oci_systemd.container import mounts\nprint(*sys.modules)"
    )
    argv = [sys.executable, "-I", "-S", "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    wanted = {f"oci_systemd.container.mounts.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    assert wanted - set(out.stdout.split()) == set()


@pytest.mark.usefixtures("resolver")
def test_open_beneath_follows_no_symlink_and_stays_below(tmp_path: Path) -> None:
    (tmp_path / "sys" / "net").mkdir(parents=True)
    (tmp_path / "sys" / "net" / "knob").write_text("0")
    (tmp_path / "sys" / "link").symlink_to("net/knob")
    (tmp_path / "sys" / "dirlink").symlink_to("net")
    (tmp_path / "outside").write_text("host")
    dfd = os.open(tmp_path / "sys", os.O_PATH | os.O_DIRECTORY)
    try:
        fd = resolve.open_beneath(dfd, "net/knob", os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b"1")
        os.close(fd)
        assert (tmp_path / "sys" / "net" / "knob").read_text() == "1"
        with pytest.raises(SyscallError) as info:
            resolve.open_beneath(dfd, "link", os.O_WRONLY)
        assert info.value.errno == errno.ELOOP
        for escape in ("dirlink/knob", "../outside"):
            with pytest.raises((OSError, SyscallError)):
                resolve.open_beneath(dfd, escape, os.O_WRONLY)
        assert (tmp_path / "outside").read_text() == "host"
    finally:
        os.close(dfd)


def test_mask_paths_checks_dev_null_only_when_something_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> int:
        raise OciSystemdError("not the null device")

    monkeypatch.setattr(masked, "_dev_null_fd", refuse)
    masked.mask_paths([], root_fd=-1)
    with pytest.raises(OciSystemdError, match="null device"):
        masked.mask_paths(["/proc/kcore"], root_fd=-1)


def test_the_option_tables_load_without_the_idlers_mount_code() -> None:
    """spec validation and `features` (the runtime, on every create) read mount_options: it must
    not bring ctypes, linux.py or the mounts package with it."""
    code = (
        f"import sys; sys.path.insert(0, {os.fspath(Path(mounts.__file__).parents[3])!r})\n"
        "import oci_systemd.container.mount_options\nprint(*sys.modules)"
    )
    argv = [sys.executable, "-I", "-S", "-c", code]
    loaded = set(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split())
    ours = {m for m in loaded if m.startswith("oci_systemd")}
    assert ours == {
        "oci_systemd",
        "oci_systemd.container",
        "oci_systemd.container.mount_options",
        "oci_systemd.errors",
    }
    assert "ctypes" not in loaded


def test_linux_re_exports_the_mount_flags() -> None:
    from oci_systemd.container import mount_options

    flags = {n: v for n, v in vars(mount_options).items() if n.startswith("MS_")}
    assert len(flags) == 23 and all(getattr(linux, n) == v for n, v in flags.items())
