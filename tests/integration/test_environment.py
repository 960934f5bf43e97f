# SPDX-License-Identifier: Apache-2.0
"""The container environment of issue 4, read from inside the container.

Each test runs a busybox program in the private systemd that prints what the kernel says
about it (/proc/self/status, limits, uid_map, mountinfo, hostname, ...) and compares that
with the config: namespaces (created and joined), linux.netDevices, the root filesystem
(read-only root, masked and read-only paths, mounts and their options, devices, sysctl,
--no-pivot) and the process (user, capabilities, rlimits, no_new_privs, oomScoreAdj,
ioPriority, scheduler, personality, seccomp, LSM labels). Terminals are in test_exec.py.
"""

from __future__ import annotations

import os
import re
import resource
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bundles
import pytest
from test_escapes import cap_mask
from test_lifecycle import Container, wait_for

from oci_systemd.devtools.sandbox import Sandbox

# -- helpers -------------------------------------------------------------------------------------


def config(script: str, **overrides: Any) -> dict[str, Any]:
    """The default config (deep-merged with `overrides`) running `sh -c script`."""
    conf = bundles.merge(bundles.base_config(), overrides)
    conf["process"]["args"] = ["sh", "-c", script]
    return conf


def run(sb: Sandbox, conf: dict[str, Any]) -> str:
    """Run to completion; the combined output (raises RuntimeFailedError on a non-zero exit)."""
    out, _cid = bundles.run_and_get_output(sb, conf)
    return out


def run_prepared(c: Container, *extra: str) -> tuple[int, str]:
    """`run` a Container whose bundle the test has touched up; (exit status, combined output)."""
    out_path = c.host_bundle / "output"
    with out_path.open("w") as out:
        proc = c.rt("run", *extra, "--bundle", c.bundle, c.id, stdout=out, stderr=out, capture_output=False)
    return proc.returncode, out_path.read_text()


def tagged(out: str) -> dict[str, str]:
    """Lines `key=value` printed by the scripts below, as a dict (the last one wins)."""
    result = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[a-z][a-z0-9_/-]*", key):
            result[key] = value
    return result


def status_fields(out: str) -> dict[str, str]:
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":\t")
        if sep:
            fields[key] = value.strip()
    return fields


class MountInfo:
    """One /proc/self/mountinfo line."""

    def __init__(self, line: str) -> None:
        left, _, right = line.partition(" - ")
        parts = left.split()
        self.point = parts[4]
        self.options = set(parts[5].split(","))
        self.optional = parts[6:]
        self.fstype, self.source, super_options = right.split()[:3]
        self.super_options = set(super_options.split(","))


def mountinfo(out: str) -> dict[str, MountInfo]:
    """Mount point → its (topmost) mount, from a `cat /proc/self/mountinfo` in the output."""
    return {
        m.point: m for m in (MountInfo(line) for line in out.splitlines() if re.match(r"^\d+ \d+ ", line))
    }


def inner(sb: Sandbox, *argv: str) -> str:
    """Run a command in the sandbox (outside any container); its stdout."""
    proc = sb.run(list(argv), capture_output=True, text=True, check=False)
    return str(proc.stdout).strip()


def ns_of(sb: Sandbox, pid: int | str, kind: str) -> str:
    return inner(sb, "readlink", f"/proc/{pid}/ns/{kind}")


# -- namespaces ----------------------------------------------------------------------------------


def test_pid_uts_ipc_cgroup_namespaces(sandbox: Sandbox) -> None:
    conf = config(
        "echo pid=$$; echo hostname=$(hostname); echo domainname=$(cat /proc/sys/kernel/domainname); "
        "for n in pid ipc uts cgroup; do echo ns-$n=$(readlink /proc/self/ns/$n); done; "
        "echo cgroup=$(cat /proc/self/cgroup); echo procs=$(cat /sys/fs/cgroup/cgroup.procs); "
        "cat /proc/self/mountinfo",
        hostname="env-test-host",
        domainname="env-test.example",
    )
    bundles.add_all_namespaces(conf)
    out = run(sandbox, conf)
    got = tagged(out)
    assert got["pid"] == "1", out
    assert got["hostname"] == "env-test-host"
    assert got["domainname"] == "env-test.example"
    for kind in ("pid", "ipc", "uts", "cgroup"):
        assert got[f"ns-{kind}"] != ns_of(sandbox, "self", kind), f"{kind} namespace is the sandbox's"
    # The scope's leaf cgroup is the namespace's root (in every hierarchy of a hybrid host),
    # and the container's cgroup2 mount shows it.
    entries = got["cgroup"].split()
    assert "0::/" in entries and all(e.endswith(":/") for e in entries), out
    assert "1" in got["procs"].split(), out
    assert mountinfo(out)["/sys/fs/cgroup"].fstype == "cgroup2"


def test_new_network_namespace_has_loopback_up_and_sysctls(sandbox: Sandbox) -> None:
    host_forward = inner(sandbox, "cat", "/proc/sys/net/ipv4/ip_forward")
    host_msgmax = inner(sandbox, "cat", "/proc/sys/kernel/msgmax")
    conf = config(
        "echo ns-net=$(readlink /proc/self/ns/net); echo links=$(ls /sys/class/net); "
        "echo lo-flags=$(cat /sys/class/net/lo/flags); ip -o link show lo; ip -o addr show lo; "
        "echo forward=$(cat /proc/sys/net/ipv4/ip_forward); echo msgmax=$(cat /proc/sys/kernel/msgmax); "
        "echo domainname=$(cat /proc/sys/kernel/domainname)",
    )
    conf["linux"]["sysctl"] = {
        "net.ipv4.ip_forward": "1" if host_forward != "1" else "0",
        "kernel.msgmax": "12345",  # ipc namespace
        "kernel/domainname": "sysctl.example",  # uts namespace, "/" spelling
    }
    out = run(sandbox, conf)
    got = tagged(out)
    assert got["ns-net"] != ns_of(sandbox, "self", "net")
    assert got["links"] == "lo", out
    assert int(got["lo-flags"], 16) & 0x1, f"lo is not IFF_UP: {out}"
    assert re.search(r"lo: <[^>]*\bUP\b", out), out
    assert "inet 127.0.0.1/8" in out, out
    assert got["forward"] == conf["linux"]["sysctl"]["net.ipv4.ip_forward"]
    assert got["msgmax"] == "12345"
    assert got["domainname"] == "sysctl.example"
    # Namespaced: the sandbox's values are untouched.
    assert inner(sandbox, "cat", "/proc/sys/net/ipv4/ip_forward") == host_forward
    assert inner(sandbox, "cat", "/proc/sys/kernel/msgmax") == host_msgmax


REFUSED_SYSCTLS = [
    # (sysctl, how the container's network namespace is given)
    ("net.ipv4.ip_forward", None),  # no network namespace: the sandbox's
    ("net.ipv4.ip_forward", "/proc/1/ns/net"),  # joined, but it is the sandbox's
    ("vm.overcommit_memory", "new"),  # not namespaced at all
]


@pytest.mark.parametrize("sysctl,netns", REFUSED_SYSCTLS, ids=["no-netns", "host-netns", "vm"])
def test_sysctls_outside_the_container_namespaces_are_refused(
    sandbox: Sandbox, sysctl: str, netns: str | None
) -> None:
    """Each would write the sandbox's (i.e. the host's) value: create must fail, naming it.
    The value asked is the current one, so even a runtime that writes it changes nothing."""
    current = inner(sandbox, "cat", f"/proc/sys/{sysctl.replace('.', '/')}")
    conf = config("echo should-not-run")
    namespaces = [ns for ns in conf["linux"]["namespaces"] if ns["type"] != "network"]
    if netns == "new":
        namespaces.append({"type": "network"})
    elif netns is not None:
        namespaces.append({"type": "network", "path": netns})
    conf["linux"]["namespaces"] = namespaces
    conf["linux"]["sysctl"] = {sysctl: current}
    with pytest.raises(bundles.RuntimeFailedError) as info:
        run(sandbox, conf)
    assert f"sysctl '{sysctl}'" in info.value.output, info.value.output
    assert "should-not-run" not in info.value.output


HOST_ID = 100000


def test_user_namespace_with_mappings(sandbox: Sandbox) -> None:
    conf = config(
        "cat /proc/self/uid_map /proc/self/gid_map; echo id=$(id -u):$(id -g); "
        "echo owner=$(stat -c %u:%g /bin/busybox); echo dev-null=$(stat -c %F:%t:%T /dev/null); "
        "touch /made-inside && echo touched=yes; cat /proc/self/status",
    )
    bundles.add_all_namespaces(conf)
    conf["linux"]["namespaces"].append({"type": "user"})
    conf["linux"]["uidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": 65536}]
    conf["linux"]["gidMappings"] = [{"containerID": 0, "hostID": HOST_ID, "size": 65536}]
    conf["root"]["readonly"] = False
    c = Container(sandbox, conf)
    rootfs = c.host_bundle / "rootfs"
    for path in [rootfs, *rootfs.rglob("*")]:
        os.lchown(path, HOST_ID, HOST_ID)
    rc, out = run_prepared(c)
    assert rc == 0, out
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["0", str(HOST_ID), "65536"] and lines[1] == ["0", str(HOST_ID), "65536"], out
    got = tagged(out)
    assert got["id"] == "0:0"
    assert got["owner"] == "0:0", "files owned by the mapped host id are root's inside"
    assert got["dev-null"] == "character special file:1:3"
    assert got["touched"] == "yes"
    made = (rootfs / "made-inside").stat()
    assert (made.st_uid, made.st_gid) == (HOST_ID, HOST_ID), (
        "a file made by root inside has the mapped owner"
    )
    # Root inside the user namespace only: the host uid is the mapped one.
    assert status_fields(out)["Uid"].split() == ["0"] * 4
    bundles.delete_container(sandbox, c.id)


def test_time_namespace_offsets(sandbox: Sandbox) -> None:
    offset = 10 * 86400
    conf = config("cat /proc/self/timens_offsets; echo uptime=$(cut -d' ' -f1 /proc/uptime)")
    conf["linux"]["namespaces"].append({"type": "time"})
    conf["linux"]["timeOffsets"] = {
        "monotonic": {"secs": offset, "nanosecs": 0},
        "boottime": {"secs": offset, "nanosecs": 0},
    }
    before = float(inner(sandbox, "cut", "-d", " ", "-f1", "/proc/uptime"))
    out = run(sandbox, conf)
    after = float(inner(sandbox, "cut", "-d", " ", "-f1", "/proc/uptime"))
    assert re.search(rf"^monotonic\s+{offset}\s+0$", out, re.M), out
    assert re.search(rf"^boottime\s+{offset}\s+0$", out, re.M), out
    uptime = float(tagged(out)["uptime"])
    assert before + offset <= uptime <= after + offset, (before, uptime, after)


@pytest.fixture
def created(sandbox: Sandbox) -> Iterator[Container]:
    """A created (not started) container with its own net and uts namespaces."""
    conf = config("sleep 1000", hostname="joined-host")
    c = Container(sandbox, conf)
    assert c.create().returncode == 0, c.output()
    yield c
    c.rt("delete", "--force", c.id)


def test_join_namespaces_by_path(sandbox: Sandbox, created: Container) -> None:
    pid = int(created.state()["pid"])
    conf = config("echo ns-net=$(readlink /proc/self/ns/net); echo hostname=$(hostname); echo pid=$$")
    del conf["hostname"]  # the uts namespace is joined: its hostname is the other container's
    joined = {"network": f"/proc/{pid}/ns/net", "uts": f"/proc/{pid}/ns/uts"}
    conf["linux"]["namespaces"] = [
        {"type": ns["type"], "path": joined[ns["type"]]} if ns["type"] in joined else ns
        for ns in conf["linux"]["namespaces"]
    ]
    got = tagged(run(sandbox, conf))
    assert got["ns-net"] == ns_of(sandbox, pid, "net")
    assert got["hostname"] == "joined-host"
    assert got["pid"] == "1"  # its own, new pid namespace
    assert created.status() == "created"


def _make_link(sb: Sandbox, name: str) -> str:
    """A dummy link in the sandbox's network namespace; a veth pair when the kernel has no dummy
    driver (no module directory on this kind of VM). Returns the link kind."""
    dummy = sb.run(["ip", "link", "add", name, "type", "dummy"], capture_output=True, text=True)
    if dummy.returncode == 0:
        return "dummy"
    veth = sb.run(
        ["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"],
        capture_output=True,
        text=True,
    )
    if veth.returncode != 0:
        pytest.skip(
            f"cannot create a dummy ({dummy.stderr.strip()}) or veth ({veth.stderr.strip()}) link here"
        )
    return "veth"


def test_net_devices_moved_and_renamed(sandbox: Sandbox) -> None:
    host_name = f"ocit{secrets.token_hex(4)}"
    kind = _make_link(sandbox, host_name)
    try:
        conf = config("ip -o link show; echo links=$(ls /sys/class/net | tr '\\n' ' ')")
        conf["linux"]["netDevices"] = {host_name: {"name": "ctr0"}}
        c = Container(sandbox, conf)
        assert c.create().returncode == 0, c.output()
        # Moved during create: gone from the sandbox's namespace while the container lives.
        gone = sandbox.run(["ip", "link", "show", host_name], capture_output=True, text=True)
        assert gone.returncode != 0, f"{host_name} ({kind}) is still in the sandbox: {gone.stdout}"
        assert c.rt("start", c.id).returncode == 0
        wait_for(lambda: c.status() == "stopped")
        out = c.output()
        assert sorted(tagged(out)["links"].split()) == ["ctr0", "lo"], out
        assert re.search(r"\bctr0[@:]", out) and host_name not in out, out
        assert c.rt("delete", c.id).returncode == 0
    finally:
        sandbox.run(["ip", "link", "del", host_name], capture_output=True)


def test_net_device_missing_fails_create(sandbox: Sandbox) -> None:
    conf = config("true")
    conf["linux"]["netDevices"] = {"ocit-missing0": {}}
    c = Container(sandbox, conf)
    assert c.create().returncode == 1
    assert "ocit-missing0" in c.output()


# -- root filesystem ---------------------------------------------------------------------------

ROOTFS_SCRIPT = r"""
touch /newfile 2>&1
echo secret=$(cat /etc/secret)
echo secret-node=$(stat -c %F:%t:%T /etc/secret)
echo secretdir=$(ls -A /srv/secretdir)
touch /srv/secretdir/x 2>&1
echo hi > /scratch/f && echo scratch=$(cat /scratch/f)
echo scratch-mode=$(stat -c %a /scratch)
echo hi > /scratch-ro/f
echo hostdata=$(cat /hostdata/file)
touch /hostdata/new 2>&1
echo shared=$(cat /hostshared/file)
cat /proc/self/mountinfo
"""


def test_rootfs_readonly_masked_readonly_paths_and_mounts(sandbox: Sandbox) -> None:
    tag = secrets.token_hex(4)
    host_dir = sandbox.host_path(f"{bundles.INNER_WORKDIR}/hostdata-{tag}")
    host_dir.mkdir(parents=True)
    (host_dir / "file").write_text("from-host\n")
    conf = config(ROOTFS_SCRIPT)
    assert conf["root"]["readonly"] is True
    conf["linux"]["maskedPaths"] += ["/etc/secret", "/srv/secretdir", "/no/such/path"]
    conf["linux"]["readonlyPaths"] += ["/scratch-ro", "/no/such/path"]
    conf["mounts"] += [
        {
            "destination": "/scratch",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "noexec", "size=2m", "mode=1770"],
        },
        {"destination": "/scratch-ro", "type": "tmpfs", "source": "tmpfs", "options": ["rw"]},
        {
            "destination": "/hostdata",
            "type": "bind",
            "source": sandbox.inner_path(host_dir),
            "options": ["rbind", "ro", "nosuid", "rprivate"],
        },
        {
            "destination": "/hostshared",
            "type": "none",
            "source": sandbox.inner_path(host_dir),
            "options": ["bind", "shared", "noatime"],
        },
    ]
    c = Container(sandbox, conf)
    rootfs = c.host_bundle / "rootfs"
    (rootfs / "etc" / "secret").write_text("top-secret\n")
    (rootfs / "srv" / "secretdir").mkdir(parents=True)
    (rootfs / "srv" / "secretdir" / "inner").write_text("hidden\n")
    rc, out = run_prepared(c)
    assert rc == 0, out
    got = tagged(out)
    # root.readonly
    assert "touch: /newfile: Read-only file system" in out
    # maskedPaths: a file is the verified /dev/null, a directory an empty read-only tmpfs
    assert got["secret"] == ""
    assert got["secret-node"] == "character special file:1:3"
    assert got["secretdir"] == ""
    assert "touch: /srv/secretdir/x: Read-only file system" in out
    mounts = mountinfo(out)
    assert mounts["/srv/secretdir"].fstype == "tmpfs" and "ro" in mounts["/srv/secretdir"].options
    # readonlyPaths
    assert "/scratch-ro/f: Read-only file system" in out
    assert "ro" in mounts["/scratch-ro"].options
    # tmpfs with size= and mode=
    assert got["scratch"] == "hi" and got["scratch-mode"] == "1770"
    scratch = mounts["/scratch"]
    assert {"size=2048k", "mode=1770"} <= scratch.super_options, scratch.super_options
    assert {"nosuid", "nodev", "noexec"} <= scratch.options
    # read-only bind of a sandbox directory, and propagation flags
    assert got["hostdata"] == "from-host" and got["shared"] == "from-host"
    assert "touch: /hostdata/new: Read-only file system" in out
    assert not (host_dir / "new").exists()
    assert {"ro", "nosuid"} <= mounts["/hostdata"].options
    assert not any(o.startswith(("shared:", "master:")) for o in mounts["/hostdata"].optional)
    assert any(o.startswith("shared:") for o in mounts["/hostshared"].optional), mounts[
        "/hostshared"
    ].optional
    assert "noatime" in mounts["/hostshared"].options
    # the rootfs copy in the bundle is unchanged by the masks
    assert (rootfs / "etc" / "secret").read_text() == "top-secret\n"
    bundles.delete_container(sandbox, c.id)


@pytest.mark.parametrize("propagation", ["slave", "private", "shared", "unbindable"])
def test_rootfs_propagation_accepted(sandbox: Sandbox, propagation: str) -> None:
    conf = config("grep -E '^[0-9]+ [0-9]+ [^ ]+ [^ ]+ / ' /proc/self/mountinfo")
    conf["linux"]["rootfsPropagation"] = propagation
    out = run(sandbox, conf)
    root = mountinfo(out)["/"]
    if propagation == "shared":
        assert any(o.startswith("shared:") for o in root.optional), out
    if propagation == "private":
        assert not any(o.startswith(("shared:", "master:")) for o in root.optional), out
    if propagation == "unbindable":
        assert "unbindable" in root.optional, out


DEVICES_SCRIPT = (
    "for d in /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty "
    "/dev/oci-char /dev/oci-block /dev/oci-fifo; do stat -c '%n|%F|%t:%T|%a|%u:%g' $d; done; "
    "for l in /dev/ptmx /dev/fd /dev/stdin /dev/stdout /dev/stderr; do echo link$l=$(readlink $l); done; "
    "echo pts=$(stat -c %F /dev/pts/ptmx); echo null-write=$(echo x > /dev/null && echo ok); "
    "echo zero=$(head -c 4 /dev/zero | od -An -tx1 | tr -d ' ')"
)


def test_default_and_configured_devices(sandbox: Sandbox) -> None:
    conf = config(DEVICES_SCRIPT)
    conf["linux"]["devices"] = [
        {
            "path": "/dev/oci-char",
            "type": "c",
            "major": 1,
            "minor": 7,
            "fileMode": 0o640,
            "uid": 0,
            "gid": 0,
        },
        {"path": "/dev/oci-block", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600, "gid": 6},
        {"path": "/dev/oci-fifo", "type": "p", "fileMode": 0o620},
    ]
    out = run(sandbox, conf)
    nodes = {
        line.split("|")[0]: line.split("|")[1:] for line in out.splitlines() if line.startswith("/dev/")
    }
    char = "character special file"
    expected = {
        "/dev/null": [char, "1:3"],
        "/dev/zero": [char, "1:5"],
        "/dev/full": [char, "1:7"],
        "/dev/random": [char, "1:8"],
        "/dev/urandom": [char, "1:9"],
        "/dev/tty": [char, "5:0"],
        "/dev/oci-char": [char, "1:7", "640", "0:0"],
        "/dev/oci-block": ["block special file", "7:c8", "600", "0:6"],
        "/dev/oci-fifo": ["fifo", "0:0", "620", "0:0"],
    }
    for path, want in expected.items():
        assert nodes[path][: len(want)] == want, (path, nodes.get(path), out)
    for path in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"):
        assert nodes[path][2] == "666", (path, nodes[path])
    got = tagged(out)
    assert got["link/dev/ptmx"] == "pts/ptmx"
    assert got["link/dev/fd"] == "/proc/self/fd"
    assert [got[f"link/dev/{s}"] for s in ("stdin", "stdout", "stderr")] == [
        f"/proc/self/fd/{n}" for n in range(3)
    ]
    assert got["pts"] == char
    assert got["null-write"] == "ok" and got["zero"] == "00000000"


def test_no_pivot(sandbox: Sandbox) -> None:
    marker = f"marker-{secrets.token_hex(3)}"
    c = Container(
        sandbox,
        config(
            f"cat /{marker}; ls /; ls {bundles.INNER_WORKDIR} 2>&1; "
            "grep -E '^[0-9]+ [0-9]+ [^ ]+ [^ ]+ / ' /proc/self/mountinfo; echo pid=$$",
        ),
    )
    (c.host_bundle / "rootfs" / marker).write_text("in-the-rootfs\n")
    rc, out = run_prepared(c, "--no-pivot")
    assert rc == 0, out
    assert "in-the-rootfs" in out
    assert "busybox" not in out.split() and "bin" in out.split()
    assert f"ls: {bundles.INNER_WORKDIR}: No such file or directory" in out, out
    assert "/" in mountinfo(out)
    assert tagged(out)["pid"] == "1"
    bundles.delete_container(sandbox, c.id)


# -- process -------------------------------------------------------------------------------------


def test_args_env_cwd_user_umask(sandbox: Sandbox) -> None:
    conf = config(
        'echo foo="$FOO"; echo argv0=$0; echo cwd=$(pwd); echo uid=$(id -u); echo gid=$(id -g); '
        "echo groups=$(id -G); echo umask=$(umask); cat /proc/self/status",
    )
    conf["process"]["args"] += ["argv-zero"]
    conf["process"]["env"] = ["PATH=/bin", "FOO=bar baz"]
    conf["process"]["cwd"] = "/tmp"
    conf["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o027}
    got_out = run(sandbox, conf)
    got = tagged(got_out)
    assert got["foo"] == "bar baz"
    assert got["argv0"] == "argv-zero"
    assert got["cwd"] == "/tmp"
    assert (got["uid"], got["gid"]) == ("1000", "1001")
    assert set(got["groups"].split()) == {"1001", "10", "20"}
    assert got["umask"] == "0027"
    status = status_fields(got_out)
    assert sorted(status["Groups"].split()) == ["10", "20"]
    # Never inheritable capabilities unless asked (CVE-2022-29162).
    assert int(status["CapInh"], 16) == 0


def test_capabilities_match_config(sandbox: Sandbox) -> None:
    """A non-root user: after execve permitted/effective are exactly the ambient set."""
    conf = config("cat /proc/self/status")
    conf["process"]["user"] = {"uid": 1000, "gid": 1000}
    conf["process"]["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_KILL", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_KILL"],
        "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_KILL", "CAP_NET_RAW"],
    }
    status = status_fields(run(sandbox, conf))
    got = {k: int(status[k], 16) for k in ("CapBnd", "CapInh", "CapAmb", "CapPrm", "CapEff")}
    both = cap_mask(["CAP_KILL", "CAP_NET_RAW"])
    assert got == {
        "CapBnd": cap_mask(
            ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"]
        ),
        "CapInh": both,
        "CapAmb": both,
        "CapPrm": both,
        "CapEff": both,
    }, {k: hex(v) for k, v in got.items()}
    assert status["NoNewPrivs"] == "1"


def test_rlimits(sandbox: Sandbox) -> None:
    conf = config("cat /proc/self/limits")
    conf["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 2048},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    out = run(sandbox, conf)
    assert re.search(r"^Max open files\s+512\s+2048\s+files", out, re.M), out
    assert re.search(r"^Max core file size\s+0\s+0\s+bytes", out, re.M), out


def test_rlimit_above_hard_limit_fails_clearly(sandbox: Sandbox) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("RLIMIT_NOFILE has no hard limit here")
    if _has_cap_sys_resource():
        pytest.skip("the runtime holds CAP_SYS_RESOURCE here: it may raise hard limits")
    conf = config("echo should-not-run")
    conf["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    c = Container(sandbox, conf)
    create = c.create()
    if create.returncode == 0:
        start = c.rt("start", c.id)
        assert start.returncode != 0
        message = start.stderr
    else:
        message = c.output()
    assert "RLIMIT_NOFILE" in message and "operation not permitted" in message, message
    assert f"hard limit is {hard}" in message, message
    assert "should-not-run" not in c.output()


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges_and_oom_score_adj(sandbox: Sandbox, nnp: bool) -> None:
    conf = config("cat /proc/self/status; echo oom=$(cat /proc/self/oom_score_adj)")
    conf["process"]["noNewPrivileges"] = nnp
    conf["process"]["oomScoreAdj"] = 500
    out = run(sandbox, conf)
    assert status_fields(out)["NoNewPrivs"] == ("1" if nnp else "0")
    assert tagged(out)["oom"] == "500"


def _has_cap_sys_resource() -> bool:
    return bool(int(status_fields(Path("/proc/self/status").read_text())["CapEff"], 16) >> 24 & 1)


def test_oom_score_adj_below_the_runtime_is_a_clear_error(sandbox: Sandbox) -> None:
    if _has_cap_sys_resource():
        pytest.skip("the runtime holds CAP_SYS_RESOURCE here: it may lower oom_score_adj")
    current = int(inner(sandbox, "cat", "/proc/self/oom_score_adj"))
    conf = config("echo should-not-run")
    conf["process"]["oomScoreAdj"] = max(current - 100, -1000)
    with pytest.raises(bundles.RuntimeFailedError) as info:
        run(sandbox, conf)
    assert "/proc/self/oom_score_adj" in info.value.output, info.value.output
    assert "should-not-run" not in info.value.output


def test_io_priority_and_scheduler(sandbox: Sandbox) -> None:
    conf = config("ionice -p $$; cat /proc/self/stat")
    conf["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 5}
    conf["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    out = run(sandbox, conf)
    assert "best-effort: prio 5" in out, out
    stat_line = next(line for line in out.splitlines() if line.startswith("1 ("))
    fields = stat_line.rsplit(")", 1)[1].split()  # fields[0] is field 3 of proc(5)
    assert int(fields[19 - 3]) == 7, "nice"
    assert int(fields[41 - 3]) == 3, "policy SCHED_BATCH"


def test_invalid_scheduler_is_a_clear_error(sandbox: Sandbox) -> None:
    """SCHED_FIFO without a priority: sched_setattr(2) says EINVAL, and the error says where."""
    conf = config("echo should-not-run")
    conf["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 0}
    with pytest.raises(bundles.RuntimeFailedError) as info:
        run(sandbox, conf)
    assert "sched_setattr `process.scheduler SCHED_FIFO`: invalid argument" in info.value.output, (
        info.value.output
    )
    assert "should-not-run" not in info.value.output


def test_personality_linux32(sandbox: Sandbox) -> None:
    conf = config("echo machine=$(uname -m); echo personality=$(cat /proc/self/personality)")
    conf["linux"]["personality"] = {"domain": "LINUX32"}
    got = tagged(run(sandbox, conf))
    assert got["machine"] == "i686"
    assert int(got["personality"], 16) == 0x8


SECCOMP_PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        # An argument condition: only mode 0600 is refused, with ENOSPC (28) to tell it apart.
        {
            "names": ["chmod"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 28,
            "args": [{"index": 1, "value": 0o600, "op": "SCMP_CMP_EQ"}],
        },
        {
            "names": ["fchmodat", "fchmodat2"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 28,
            "args": [{"index": 2, "value": 0o600, "op": "SCMP_CMP_EQ"}],
        },
    ],
}

SECCOMP_SCRIPT = (
    "mkdir /dev/shm/d 2>&1; touch /dev/shm/f && echo touch=ok; "
    "chmod 644 /dev/shm/f && echo chmod644=ok; chmod 600 /dev/shm/f 2>&1; "
    "echo mode=$(stat -c %a /dev/shm/f); cat /proc/self/status"
)


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_seccomp(sandbox: Sandbox, nnp: bool) -> None:
    conf = config(SECCOMP_SCRIPT)
    conf["linux"]["seccomp"] = SECCOMP_PROFILE
    conf["process"]["noNewPrivileges"] = nnp
    conf["process"]["user"] = {"uid": 1000, "gid": 1000}
    out = run(sandbox, conf)
    assert "mkdir: can't create directory '/dev/shm/d': Operation not permitted" in out, out
    assert tagged(out)["touch"] == "ok" and tagged(out)["chmod644"] == "ok"
    assert "No space left on device" in out, out
    assert tagged(out)["mode"] == "644"
    status = status_fields(out)
    assert status["Seccomp"] == "2"
    assert status["NoNewPrivs"] == ("1" if nnp else "0")


def test_seccomp_unknown_action_is_refused(sandbox: Sandbox) -> None:
    conf = config("echo should-not-run")
    conf["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_SOMETIMES"}
    with pytest.raises(bundles.RuntimeFailedError) as info:
        run(sandbox, conf)
    assert "SCMP_ACT_SOMETIMES" in info.value.output
    assert "should-not-run" not in info.value.output


# -- LSM labels ----------------------------------------------------------------------------------


def _labelled() -> dict[str, Any]:
    conf = config("echo labelled-ran; cat /proc/self/attr/current 2>/dev/null; true")
    conf["process"]["apparmorProfile"] = "oci-systemd-test"
    conf["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0:c1,c2"
    conf["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0:c1,c2"
    return conf


def _host_lsms() -> set[str]:
    try:
        return set(Path("/sys/kernel/security/lsm").read_text().strip().split(","))
    except OSError:
        return set()


def test_lsm_labels_accepted_without_lsm(sandbox: Sandbox) -> None:
    if _host_lsms() & {"selinux", "apparmor"}:
        pytest.skip("this host has SELinux or AppArmor: the labels would be applied")
    c = Container(sandbox, _labelled())
    rc, out = run_prepared(c)
    assert rc == 0, out
    assert "labelled-ran" in out
    bundles.delete_container(sandbox, c.id)


def test_lsm_labels_warn_without_lsm(sandbox: Sandbox) -> None:
    if _host_lsms() & {"selinux", "apparmor"}:
        pytest.skip("this host has SELinux or AppArmor: the labels would be applied")
    conf = _labelled()
    c = Container(sandbox, conf)
    assert c.create().returncode == 0, c.output()
    for field in ("apparmorProfile", "selinuxLabel", "mountLabel"):
        assert field in c.output(), c.output()
