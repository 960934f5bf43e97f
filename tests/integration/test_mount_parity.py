# SPDX-License-Identifier: Apache-2.0
"""Mount and namespace parity with runc/crun (issue 13): a container without a mount namespace,
rootfsPropagation, a uts namespace joined by path, user namespaces and /dev, bind sources only
the host's root may reach, sysctls that conflict with hostname/domainname.

A container without a mount namespace shares its caller's: every call of the runtime for one runs
in a throw-away mount namespace nested in the sandbox (`in_throwaway_ns`), so that even a
regression that pivots or unmounts only hits that namespace, and the test compares its mountinfo
and a marker file before and after.
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import bundles
import pytest
from test_environment import HOST_ID, config, mountinfo, run, run_prepared, tagged
from test_lifecycle import Container, no_trace_left, wait_for

from oci_systemd.devtools.sandbox import Sandbox

HOST_MAP = [{"containerID": 0, "hostID": HOST_ID, "size": 65536}]
IDENTITY_MAP = [{"containerID": 0, "hostID": 0, "size": 4294967295}]


def in_throwaway_ns(sb: Sandbox, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`sh -c script` in a new mount namespace inside the sandbox (private, so nothing done in it
    propagates out). $RT in the script is the runtime under test."""
    rt = shlex.join(bundles.runtime_argv())
    return sb.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            f"RT={shlex.quote(rt)}\n{script}",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def refused_in_throwaway_ns(sb: Sandbox, c: Container) -> str:
    """`create` c in a throw-away mount namespace, which must fail and leave that namespace's
    mounts as they were; what the runtime printed."""
    proc = in_throwaway_ns(
        sb,
        f"""
        cat /proc/self/mountinfo > {c.bundle}/mi-before
        $RT create --bundle {c.bundle} {c.id} > {c.bundle}/out 2>&1; echo rc=$?
        cat /proc/self/mountinfo > {c.bundle}/mi-after
        """,
    )
    out = (c.host_bundle / "out").read_text()
    assert tagged(proc.stdout).get("rc") not in (None, "0"), (proc.stdout, out)
    assert (c.host_bundle / "mi-after").read_text() == (c.host_bundle / "mi-before").read_text()
    return out


def no_mount_ns_config(script: str) -> dict[str, Any]:
    """The default config without mount namespace and without what needs one."""
    conf = config(script)
    conf["linux"]["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "network", "cgroup")]
    conf["mounts"] = []
    for key in ("maskedPaths", "readonlyPaths"):
        conf["linux"].pop(key, None)
    conf["root"]["readonly"] = False
    return conf


def sandbox_mountinfo(sb: Sandbox) -> str:
    return str(sb.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True, check=True).stdout)


def root_entry(mountinfo: str) -> list[str]:
    return [line for line in mountinfo.splitlines() if line.split()[4] == "/"]


# -- 1: no mount namespace -------------------------------------------------------------------------


def test_without_mount_namespace_chroots_and_leaves_the_caller_alone(sandbox: Sandbox) -> None:
    tag = secrets.token_hex(4)
    marker = f"{bundles.INNER_WORKDIR}/caller-marker-{tag}"
    bundles.ensure_rootfs(sandbox)  # makes the work directory
    sandbox.host_path(marker).write_text(f"caller-{tag}\n")
    conf = no_mount_ns_config(
        f"echo inside=$(cat /only-in-rootfs); "
        f"test -e {marker} && echo caller=visible || echo caller=hidden; "
        "echo null=$(stat -c %F:%t:%T /dev/null); echo done=yes"
    )
    c = Container(sandbox, conf)
    (c.host_bundle / "rootfs" / "only-in-rootfs").write_text(f"rootfs-{tag}\n")
    work = c.bundle
    outer_before = sandbox_mountinfo(sandbox)
    proc = in_throwaway_ns(
        sandbox,
        f"""
        cat /proc/self/mountinfo > {work}/mi-before
        $RT run --bundle {work} {c.id} > {work}/out 2>&1; echo rc=$? >> {work}/out
        cat /proc/self/mountinfo > {work}/mi-after
        echo marker=$(cat {marker})
        $RT delete --force {c.id}
        """,
    )
    out = (c.host_bundle / "out").read_text()
    got = tagged(out)
    assert got.get("rc") == "0", (out, proc.stderr)
    assert got["inside"] == f"rootfs-{tag}", "the program did not run in the bundle's rootfs"
    assert got["caller"] == "hidden", "the program saw the caller's / (not chrooted)"
    assert got["null"] == "character special file:1:3", out
    assert got["done"] == "yes"
    # The caller's namespace: same root, same mounts (nothing pivoted, unmounted, left mounted or
    # made private), and its files are still its own.
    assert tagged(proc.stdout).get("marker") == f"caller-{tag}", (proc.stdout, proc.stderr)
    before = (c.host_bundle / "mi-before").read_text()
    after = (c.host_bundle / "mi-after").read_text()
    assert root_entry(after) == root_entry(before)
    assert after == before, "the runtime changed the mounts of its caller's namespace"
    assert sandbox_mountinfo(sandbox) == outer_before
    no_trace_left(sandbox, c)


def test_sd_notify_without_mount_namespace(sandbox: Sandbox) -> None:
    """With NOTIFY_SOCKET set (a Type=notify service) nothing can be mounted at /run/notify for
    a container without a mount namespace: in `started` mode the runtime says READY=1 itself and
    the container runs; in `container` mode create is refused and leaves nothing behind."""
    c = Container(sandbox, no_mount_ns_config("echo ran=yes"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(os.fspath(c.host_bundle / "service-notify.sock"))
    listener.settimeout(10)
    host_notify = f"{c.bundle}/service-notify.sock"
    try:
        proc = in_throwaway_ns(
            sandbox,
            f"""
            cat /proc/self/mountinfo > {c.bundle}/mi-before
            NOTIFY_SOCKET={host_notify} OCI_SYSTEMD_NOTIFY=started \
                $RT run --bundle {c.bundle} {c.id} > {c.bundle}/out 2>&1; echo rc=$?
            NOTIFY_SOCKET={host_notify} OCI_SYSTEMD_NOTIFY=container \
                $RT create --bundle {c.bundle} {c.id}-c > {c.bundle}/out-c 2>&1; echo rc_container=$?
            $RT delete --force {c.id}
            cat /proc/self/mountinfo > {c.bundle}/mi-after
            """,
        )
        messages = listener.recv(4096).decode()
    finally:
        listener.close()
    out = (c.host_bundle / "out").read_text()
    got = tagged(proc.stdout)
    assert got.get("rc") == "0", (proc.stdout, proc.stderr, out)
    assert "ran=yes" in out
    assert "READY=1" in messages.split("\n"), messages
    assert got.get("rc_container") not in (None, "0"), proc.stdout
    refused = (c.host_bundle / "out-c").read_text()
    assert "needs a mount namespace" in refused, refused
    assert not sandbox.host_path(f"/run/oci-systemd/{c.id}-c").exists()
    assert (c.host_bundle / "mi-after").read_text() == (c.host_bundle / "mi-before").read_text()
    no_trace_left(sandbox, c)


def test_exec_into_a_container_without_mount_namespace_is_chrooted(sandbox: Sandbox) -> None:
    tag = secrets.token_hex(4)
    c = Container(sandbox, no_mount_ns_config("sleep 60"))
    (c.host_bundle / "rootfs" / "only-in-rootfs").write_text(f"rootfs-{tag}\n")
    proc = in_throwaway_ns(
        sandbox,
        f"""
        cat /proc/self/mountinfo > {c.bundle}/mi-before
        $RT create --bundle {c.bundle} {c.id} > {c.bundle}/out 2>&1 && $RT start {c.id}
        $RT exec {c.id} sh -c 'echo inside=$(cat /only-in-rootfs); echo bundle=$(ls {c.bundle} 2>&1)'
        echo rc=$?
        $RT delete --force {c.id}
        cat /proc/self/mountinfo > {c.bundle}/mi-after
        """,
    )
    got = tagged(proc.stdout)
    assert got.get("rc") == "0", (proc.stdout, proc.stderr, (c.host_bundle / "out").read_text())
    assert got["inside"] == f"rootfs-{tag}", "exec did not run in the container's root"
    assert "config.json" not in got["bundle"], "exec saw the caller's /"
    no_trace_left(sandbox, c)


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("mounts", {"mounts": [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}]}),
        ("linux.maskedPaths", {"linux": {"maskedPaths": ["/proc/kcore"]}}),
        ("linux.readonlyPaths", {"linux": {"readonlyPaths": ["/proc/sys"]}}),
        ("linux.rootfsPropagation", {"linux": {"rootfsPropagation": "private"}}),
        ("root.readonly", {"root": {"readonly": True}}),
    ],
)
def test_without_mount_namespace_what_needs_a_mount_is_refused(
    sandbox: Sandbox, field: str, change: dict[str, Any]
) -> None:
    conf = bundles.merge(no_mount_ns_config("echo should-not-run"), change)
    c = Container(sandbox, conf)
    out = refused_in_throwaway_ns(sandbox, c)
    assert field in out and "mount namespace" in out, out
    no_trace_left(sandbox, c)


def test_joining_the_callers_own_mount_namespace_is_refused(sandbox: Sandbox) -> None:
    conf = config("echo should-not-run")
    bundles.add_all_namespaces(conf)
    conf["linux"]["namespaces"] = [
        ns if ns["type"] != "mount" else {"type": "mount", "path": "/proc/self/ns/mnt"}
        for ns in conf["linux"]["namespaces"]
    ]
    c = Container(sandbox, conf)
    out = refused_in_throwaway_ns(sandbox, c)
    assert "is the runtime's own" in out, out
    no_trace_left(sandbox, c)


# -- 2: rootfsPropagation --------------------------------------------------------------------------


@pytest.fixture
def shared_source(sandbox: Sandbox) -> Iterator[str]:
    """A shared tmpfs in the sandbox (a host mount point containerd would bind with propagation)."""
    path = f"{bundles.INNER_WORKDIR}/shared-{secrets.token_hex(4)}"
    sandbox.run(["mkdir", "-p", path], check=True)
    sandbox.run(["mount", "-t", "tmpfs", "tmpfs", path], check=True)
    sandbox.run(["mount", "--make-shared", path], check=True)
    try:
        yield path
    finally:
        sandbox.run(["umount", "-R", "-l", path], check=False)
        sandbox.run(["rmdir", path], check=False)


_WAIT_FOR = "i=0; while [ ! -e {f} ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; "


def _with_sys_admin(conf: dict[str, Any]) -> dict[str, Any]:
    caps = conf["process"].setdefault("capabilities", {})
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = sorted({*caps.get(kind, []), "CAP_SYS_ADMIN"})
    return conf


# runc's default (no rootfsPropagation) is rslave: host mounts made after start reach the
# container, the container's never reach the host. crun 1.8.1 defaults to rprivate.
@pytest.mark.parametrize(
    ("propagation", "seen", "kinds", "reaches_host"),
    [
        (None, "from-host", {"master"}, False),
        ("rslave", "from-host", {"master"}, False),
        ("rshared", "from-host", {"shared"}, True),
        ("rprivate", "no", set(), False),
    ],
)
def test_rootfs_propagation_and_mounts_made_after_start(
    sandbox: Sandbox,
    shared_source: str,
    propagation: str | None,
    seen: str,
    kinds: set[str],
    reaches_host: bool,
) -> None:
    """Host → container and container → host, on a bind of a shared host directory.

    /shared/mounted and /shared/ctr-done are files on the bound tmpfs itself (visible whatever
    the propagation): the host writes the first once it has mounted /shared/sub, the container
    the second once it has mounted /shared/ctr."""
    conf = _with_sys_admin(
        config(
            _WAIT_FOR.format(f="/shared/mounted")
            + "echo seen=$(cat /shared/sub/marker 2>/dev/null || echo no); cat /proc/self/mountinfo; "
            "mkdir /shared/ctr && mount -t tmpfs ctr-tmpfs /shared/ctr && echo ctr-mount=ok; "
            "touch /shared/ctr-done; exec sleep 60"
        )
    )
    bundles.add_all_namespaces(conf)
    if propagation:
        conf["linux"]["rootfsPropagation"] = propagation
    else:
        conf["linux"].pop("rootfsPropagation", None)
    conf["mounts"] = [
        *conf["mounts"],
        {"destination": "/shared", "type": "bind", "source": shared_source, "options": ["bind", "rbind"]},
    ]
    _, cid = bundles.run_and_get_output(sandbox, conf, detach=True)
    output_file = sandbox.host_path(f"{bundles.INNER_WORKDIR}/bundles/{cid}/output")
    # After start: a new mount on the host side, below the bind source.
    sandbox.run(["mkdir", "-p", f"{shared_source}/sub"], check=True)
    sandbox.run(["mount", "-t", "tmpfs", "tmpfs", f"{shared_source}/sub"], check=True)
    sandbox.run(
        ["sh", "-c", f"echo from-host > {shared_source}/sub/marker; touch {shared_source}/mounted"],
        check=True,
    )
    done = sandbox.host_path(f"{shared_source}/ctr-done")
    wait_for(done.exists, timeout=20)
    out = output_file.read_text()
    assert tagged(out)["seen"] == seen, out
    assert tagged(out).get("ctr-mount") == "ok", out
    inside = mountinfo(out)
    assert _kinds(inside["/shared"].optional) == kinds, inside["/shared"].optional
    assert ("/shared/sub" in inside) == (seen == "from-host"), out
    on_host = [line.split()[4] for line in sandbox_mountinfo(sandbox).splitlines()]
    assert (f"{shared_source}/ctr" in on_host) == reaches_host, on_host


def _kinds(optional: list[str]) -> set[str]:
    return {field.split(":")[0] for field in optional}


@pytest.mark.parametrize(
    ("propagation", "root", "proc"),
    [
        ("private", set(), set()),
        ("rprivate", set(), set()),
        ("shared", {"shared"}, set()),
        ("rshared", {"shared"}, {"shared"}),
        ("unbindable", {"unbindable"}, set()),
        ("runbindable", {"unbindable"}, {"unbindable"}),
    ],
)
def test_rootfs_propagation_of_root_and_submounts(
    sandbox: Sandbox, propagation: str, root: set[str], proc: set[str]
) -> None:
    """What each value does to the container's / and, for the recursive ones, to the mounts below."""
    conf = config("cat /proc/self/mountinfo")
    bundles.add_all_namespaces(conf)
    conf["linux"]["rootfsPropagation"] = propagation
    mounts = mountinfo(run(sandbox, conf))
    assert _kinds(mounts["/"].optional) == root, mounts["/"].optional
    assert _kinds(mounts["/proc"].optional) == proc, mounts["/proc"].optional


# -- 3: uts namespace joined by path with a hostname -----------------------------------------------


@pytest.fixture
def uts_holder(sandbox: Sandbox) -> Iterator[int]:
    """A process in its own uts namespace (hostname "holder"); its pid inside the sandbox."""
    pidfile = sandbox.host_path(f"{bundles.INNER_WORKDIR}/uts-holder-{secrets.token_hex(4)}")
    holder = subprocess.Popen(
        [
            *sandbox.nsenter_argv(),
            "unshare",
            "--uts",
            "sh",
            "-c",
            f"hostname holder; echo $$ > {sandbox.inner_path(pidfile)}.tmp; "
            f"mv {sandbox.inner_path(pidfile)}.tmp {sandbox.inner_path(pidfile)}; exec sleep 300",
        ]
    )
    try:
        wait_for(pidfile.exists, timeout=10)
        yield int(pidfile.read_text())
    finally:
        if pidfile.exists():
            sandbox.run(["kill", pidfile.read_text().strip()], check=False)
        holder.wait(timeout=10)
        pidfile.unlink(missing_ok=True)


def test_hostname_in_a_uts_namespace_joined_by_path(sandbox: Sandbox, uts_holder: int) -> None:
    sandbox_name = sandbox.run(["hostname"], capture_output=True, text=True, check=True).stdout
    conf = config("echo name=$(hostname)")
    bundles.add_all_namespaces(conf)
    conf["linux"]["namespaces"] = [
        ns if ns["type"] != "uts" else {"type": "uts", "path": f"/proc/{uts_holder}/ns/uts"}
        for ns in conf["linux"]["namespaces"]
    ]
    conf["hostname"] = "joined-uts"
    out = run(sandbox, conf)
    assert tagged(out)["name"] == "joined-uts", out
    holder_name = sandbox.run(
        ["nsenter", "-t", str(uts_holder), "-u", "hostname"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert holder_name == "joined-uts", "the hostname was not set in the joined namespace"
    assert sandbox.run(["hostname"], capture_output=True, text=True, check=True).stdout == sandbox_name


def test_hostname_in_the_hosts_uts_namespace_is_refused(sandbox: Sandbox) -> None:
    before = sandbox.run(["hostname"], capture_output=True, text=True, check=True).stdout
    conf = config("echo should-not-run")
    bundles.add_all_namespaces(conf)
    conf["linux"]["namespaces"] = [
        ns if ns["type"] != "uts" else {"type": "uts", "path": "/proc/1/ns/uts"}
        for ns in conf["linux"]["namespaces"]
    ]
    conf["hostname"] = f"renamed-{secrets.token_hex(3)}"
    c = Container(sandbox, conf)
    rc, out = run_prepared(c)
    assert rc != 0 and "is the host's" in out, out
    assert sandbox.run(["hostname"], capture_output=True, text=True, check=True).stdout == before
    no_trace_left(sandbox, c)


# -- 4, 5: user namespaces -------------------------------------------------------------------------


def userns_config(script: str, id_map: list[dict[str, int]]) -> dict[str, Any]:
    """All namespaces, a user namespace among them, both id maps `id_map`."""
    conf = config(script)
    bundles.add_all_namespaces(conf)
    conf["linux"]["namespaces"].append({"type": "user"})
    conf["linux"]["uidMappings"] = id_map
    conf["linux"]["gidMappings"] = id_map
    return conf


def test_user_namespace_with_identity_map_binds_devices(sandbox: Sandbox) -> None:
    conf = userns_config(
        "echo null=$(stat -c %F:%t:%T /dev/null); echo x > /dev/null && echo wrote=yes", IDENTITY_MAP
    )
    got = tagged(run(sandbox, conf))
    assert got["null"] == "character special file:1:3"
    assert got["wrote"] == "yes"


def _mapped_rootfs(c: Container) -> None:
    rootfs = c.host_bundle / "rootfs"
    for path in [rootfs, *rootfs.rglob("*")]:
        os.lchown(path, HOST_ID, HOST_ID)


def test_bind_source_only_host_root_can_reach(sandbox: Sandbox) -> None:
    """The source sits below a 0700 directory of the host's root: unreachable for the container's
    root (host uid 100000), reachable for the runtime that opens it before the switch."""
    private = sandbox.host_path(f"{bundles.INNER_WORKDIR}/private-{secrets.token_hex(4)}")
    (private / "sub").mkdir(parents=True)
    (private / "sub" / "data").write_text("bound-ok\n")
    private.chmod(0o700)
    (private / "sub").chmod(0o755)
    (private / "file").write_text("file-ok\n")
    (private / "file").chmod(0o644)
    try:
        conf = userns_config("echo dir=$(cat /mnt/dir/data); echo file=$(cat /mnt/file)", HOST_MAP)
        conf["root"]["readonly"] = False
        conf["mounts"] = [
            *conf["mounts"],
            {
                "destination": "/mnt/dir",
                "type": "bind",
                "source": f"{sandbox.inner_path(private)}/sub",
                "options": ["rbind", "ro"],
            },
            {
                "destination": "/mnt/file",
                "type": "bind",
                "source": f"{sandbox.inner_path(private)}/file",
                "options": ["bind"],
            },
        ]
        c = Container(sandbox, conf)
        _mapped_rootfs(c)
        assert c.create().returncode == 0, c.output()
        # The sources' fds were closed right after the mounts: the waiting idler holds none.
        pid = (c.host_bundle / "pid").read_text().strip()
        fds = sandbox.run(["ls", "-l", f"/proc/{pid}/fd"], capture_output=True, text=True, check=True).stdout
        # (A path outside the container's root reads back relative to its detached mount.)
        assert private.name not in fds, fds
        assert c.rt("start", c.id).returncode == 0
        wait_for(lambda: "file=" in c.output(), timeout=15)
        got = tagged(c.output())
        assert (got["dir"], got["file"]) == ("bound-ok", "file-ok"), c.output()
        bundles.delete_container(sandbox, c.id)
    finally:
        for p in (private / "sub" / "data", private / "file"):
            p.unlink(missing_ok=True)
        for p in (private / "sub", private):
            p.rmdir()


def test_missing_bind_source_in_user_namespace_is_a_clear_error(sandbox: Sandbox) -> None:
    conf = userns_config("echo should-not-run", HOST_MAP)
    missing = f"{bundles.INNER_WORKDIR}/missing-{secrets.token_hex(4)}"
    conf["mounts"] = [
        *conf["mounts"],
        {"destination": "/mnt", "type": "bind", "source": missing, "options": ["bind"]},
    ]
    c = Container(sandbox, conf)
    _mapped_rootfs(c)
    rc, out = run_prepared(c)
    assert rc != 0
    assert missing in out and "no such file or directory" in out.lower(), out
    no_trace_left(sandbox, c)


# -- 6: sysctl against hostname/domainname ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "key"),
    [("hostname", "kernel.hostname"), ("domainname", "kernel.domainname"), ("hostname", "kernel/hostname")],
)
def test_sysctl_conflicting_with_hostname_is_refused(sandbox: Sandbox, field: str, key: str) -> None:
    conf = config("echo should-not-run")
    bundles.add_all_namespaces(conf)
    conf[field] = "from-field"
    conf["linux"]["sysctl"] = {key: "from-sysctl"}
    c = Container(sandbox, conf)
    rc, out = run_prepared(c)
    assert rc != 0, out
    assert "should-not-run" not in out
    assert "sysctl" in out and f"conflicts with the {field} field" in out, out
    no_trace_left(sandbox, c)


def test_kernel_domainname_sysctl_alone_is_applied(sandbox: Sandbox) -> None:
    conf = config("echo domain=$(cat /proc/sys/kernel/domainname)")
    bundles.add_all_namespaces(conf)
    conf["linux"]["sysctl"] = {"kernel.domainname": "from-sysctl"}
    assert tagged(run(sandbox, conf))["domain"] == "from-sysctl"
