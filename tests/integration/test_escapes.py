# SPDX-License-Identifier: Apache-2.0
"""Escape attempts from inside a container (issue 8, part 5); each must fail, every time.

- the host's interpreter through /proc/<idler>/exe (CVE-2019-5736): the idler is the
  created container's pid 1 and the process `exec` forks; both are non-dumpable, so a
  container process (no CAP_SYS_PTRACE) can neither open nor even readlink their exe;
- a host fd leaked by the caller (CVE-2024-21626): only 0, 1, 2 reach the program;
- a mount destination through a symlink in the rootfs (CVE-2021-30465-like): the mount
  lands inside the rootfs, nothing is created or mounted outside;
- /proc/sys writable when readonlyPaths lists it;
- capabilities beyond the config after exec, or regained through a setuid binary with
  noNewPrivileges.

No attempt can damage the host when it succeeds: writes use an empty append (`: >>`) or
write back the value just read.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bundles
import pytest
from test_lifecycle import Container, wait_for

from oci_systemd.devtools.sandbox import Sandbox

REPEAT = 3

CAP_NUMBERS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_FOWNER": 3,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_MKNOD": 27,
    "CAP_AUDIT_WRITE": 29,
}


def cap_mask(names: list[str]) -> int:
    mask = 0
    for name in names:
        mask |= 1 << CAP_NUMBERS[name]
    return mask


def _config(args: list[str], **overrides: Any) -> dict[str, Any]:
    conf = bundles.merge(bundles.base_config(), overrides)
    conf["process"]["args"] = args
    return conf


def run_container(sb: Sandbox, args: list[str], **overrides: Any) -> str:
    """`run` to completion; returns the combined output (raises on a non-zero exit)."""
    out, _cid = bundles.run_and_get_output(sb, _config(args, **overrides))
    return out


@pytest.fixture
def created(sandbox: Sandbox) -> Iterator[Container]:
    """A created, not started, container: its pid 1 is the idler (the host's python)."""
    c = Container(sandbox, _config(["sleep", "1000"]))
    assert c.create().returncode == 0, c.output()
    yield c
    c.rt("delete", "--force", c.id)


# -- the host's interpreter -----------------------------------------------------------------

PROBE_PID1 = (
    "for i in 1 2 3; do "
    "  if cat /proc/1/exe >/dev/null 2>&1; then echo OPEN-READ-OK; else echo open-read-denied; fi; "
    "  if true 2>/dev/null >> /proc/1/exe; then echo OPEN-WRITE-OK; else echo open-write-denied; fi; "
    "  if readlink /proc/1/exe >/dev/null 2>&1; then echo READLINK-OK; else echo readlink-denied; fi; "
    "done; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
    # The control: the same check on a dumpable process of the container passes.
    "readlink /proc/$$/exe >/dev/null && echo control-readlink-works"
)


@pytest.mark.parametrize(
    "user", [{"uid": 0, "gid": 0}, {"uid": 65534, "gid": 65534}], ids=["root", "nobody"]
)
def test_idler_exe_is_out_of_reach_from_a_sibling(
    sandbox: Sandbox, created: Container, user: dict[str, int]
) -> None:
    """A second container joins the created container's pid namespace, where pid 1 is the idler."""
    pid = int(created.state()["pid"])
    assert "oci_systemd.container.idler" in sandbox.host_path(f"/proc/{pid}/cmdline").read_text()
    for _ in range(REPEAT):
        conf = _config(["sh", "-c", PROBE_PID1])
        conf["process"]["user"] = user
        conf["linux"]["namespaces"] = [
            {"type": "pid", "path": f"/proc/{pid}/ns/pid"} if ns["type"] == "pid" else ns
            for ns in conf["linux"]["namespaces"]
        ]
        out, _cid = bundles.run_and_get_output(sandbox, conf)
        assert "oci_systemd.container.idler" in out, f"pid 1 is not the idler: {out}"
        assert "-OK" not in out, out
        assert "control-readlink-works" in out, out
        assert out.count("open-read-denied") == 3 and out.count("open-write-denied") == 3, out
    assert created.status() == "created"


def test_exec_process_exe_is_out_of_reach(sandbox: Sandbox) -> None:
    """While `exec` runs, its forked process is the host's python until it execs: a container
    process scanning /proc must never resolve a python exe."""
    marker = f"/stop-{secrets.token_hex(3)}"
    # readlink of /proc/<pid>/exe passes the same ptrace access check as opening it, and names
    # what it found in one step (a separate open + readlink would race with exiting processes).
    scanner = (
        f"n=0; while [ ! -e {marker} ]; do n=$((n+1)); for p in /proc/[0-9]*; do "
        "t=$(readlink $p/exe 2>/dev/null) && case $t in *busybox*|'') ;; *) echo FOUND $p $t;; esac; "
        "done; done; echo scanner-done $n"
    )
    c = Container(sandbox, _config(["sh", "-c", scanner]))
    assert c.create().returncode == 0, c.output()
    assert c.rt("start", c.id).returncode == 0
    for _ in range(10):
        proc = c.rt("exec", c.id, "true")
        assert proc.returncode == 0, proc.stderr
    c.touch(marker)  # the rootfs is read-only inside; the bundle's copy is not
    wait_for(lambda: "scanner-done" in c.output(), timeout=20)
    assert "FOUND" not in c.output(), c.output()


# -- host fds --------------------------------------------------------------------------------


def test_only_stdio_reaches_the_program(sandbox: Sandbox) -> None:
    """The caller leaks a directory fd of the host's / and a file fd: the program sees neither."""
    leaked_dir = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    leaked_file = os.open("/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/passwd", os.O_RDONLY)
    os.set_inheritable(leaked_dir, True)
    os.set_inheritable(leaked_file, True)
    try:
        for _ in range(REPEAT):
            c = Container(
                sandbox,
                _config(
                    [
                        "sh",
                        "-c",
                        "ls -l /proc/1/fd; "
                        f"ls /proc/self/fd/{leaked_dir}/ 2>/dev/null && echo HOST-DIR-REACHED; "
                        "for f in /proc/1/fd/*; do readlink $f; done; true",
                    ]
                ),
            )
            out_path = c.host_bundle / "output"
            with out_path.open("w") as out:
                proc = c.rt(
                    "run",
                    "--bundle",
                    c.bundle,
                    c.id,
                    stdout=out,
                    stderr=out,
                    capture_output=False,
                    pass_fds=(leaked_dir, leaked_file),
                )
            output = out_path.read_text()
            assert proc.returncode == 0, output
            fds = [line.split("->")[0].split()[-1] for line in output.splitlines() if " -> " in line]
            assert fds == ["0", "1", "2"], output
            assert "HOST-DIR-REACHED" not in output
    finally:
        os.close(leaked_dir)
        os.close(leaked_file)


# -- symlinked mount destinations ---------------------------------------------------------------


def test_symlinked_mount_destinations_stay_inside(sandbox: Sandbox) -> None:
    for _ in range(REPEAT):
        tag = secrets.token_hex(4)
        # A directory outside the rootfs, where an escaping mount would land.
        outside_inner = f"{bundles.INNER_WORKDIR}/outside-{tag}"
        outside = sandbox.host_path(outside_inner)
        outside.mkdir(parents=True)
        outside_dest_inner = f"{outside_inner}-dest"
        outside_dest = sandbox.host_path(outside_dest_inner)
        outside_dest.mkdir()
        marker_src = sandbox.host_path(f"{bundles.INNER_WORKDIR}/marker-{tag}")
        marker_src.write_text("marker\n")
        links = {
            "evil-root": "/",
            "evil-up": "../../../../../../../..",
            "evil-abs": outside_inner,
            "evil-rel": "../../../../../../../.." + outside_inner,
            "evil-dest": outside_dest_inner,
        }
        mounts = [
            {"destination": "/evil-root/m-root", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/evil-up/m-up", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/evil-abs/m-abs", "type": "tmpfs", "source": "tmpfs"},
            {"destination": "/evil-rel/m-rel", "type": "tmpfs", "source": "tmpfs"},
            {
                "destination": "/evil-abs/bound",
                "type": "bind",
                "source": sandbox.inner_path(marker_src),
                "options": ["bind", "ro"],
            },
            # The destination itself a symlink to a directory outside.
            {"destination": "/evil-dest", "type": "tmpfs", "source": "tmpfs"},
        ]
        conf = _config(
            [
                "sh",
                "-c",
                "for d in /evil-root/m-root /evil-up/m-up /evil-abs/m-abs /evil-rel/m-rel; do "
                "echo in > $d/written-by-container || echo write-failed $d; done; cat /proc/self/mountinfo",
            ]
        )
        conf["mounts"] = [*conf["mounts"], *mounts]
        conf["root"]["readonly"] = False
        c = Container(sandbox, conf)
        rootfs = c.host_bundle / "rootfs"
        for name, target in links.items():
            (rootfs / name).symlink_to(target)
        out_path = c.host_bundle / "output"
        with out_path.open("w") as out:
            proc = c.rt("run", "--bundle", c.bundle, c.id, stdout=out, stderr=out, capture_output=False)
        output = out_path.read_text()
        # Refusing such a config is fine; landing outside never is.
        for d in (outside, outside_dest):
            assert list(d.iterdir()) == [], f"created outside the rootfs: {list(d.iterdir())}"
        assert marker_src.read_text() == "marker\n"
        host_mounts = sandbox.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True).stdout
        assert tag not in host_mounts.replace(f"marker-{tag}", ""), "a mount landed in the sandbox"
        if proc.returncode == 0:
            points = {line.split()[4] for line in output.splitlines() if re.match(r"^\d+ \d+ ", line)}
            # Resolved as if the rootfs were /: the symlinks are followed inside it.
            for expected in (
                "/m-root",
                "/m-up",
                f"{outside_inner}/m-abs",
                f"{outside_inner}/m-rel",
                outside_dest_inner,
            ):
                assert expected in points, (expected, sorted(points), output)
            assert "write-failed" not in output
            # And there, inside the rootfs, is where their mount points were made.
            assert (rootfs / "m-root").is_dir() and (rootfs / outside_inner.lstrip("/") / "m-abs").is_dir()
        bundles.delete_container(sandbox, c.id)


# -- /proc/sys ------------------------------------------------------------------------------------

PROC_SYS_ATTEMPTS = (
    "for f in /proc/sys/kernel/hostname /proc/sys/kernel/domainname /proc/sys/kernel/core_pattern "
    "/proc/sys/vm/overcommit_memory /proc/self/root/proc/sys/kernel/hostname "
    "/proc/1/root/proc/sys/kernel/core_pattern; do "
    '  v=$(cat $f); if printf "%s\\n" "$v" 2>/dev/null > $f; then echo WROTE $f; else echo denied $f; fi; '
    "done; "
    "if true 2>/dev/null >> /proc/sysrq-trigger; then echo WROTE sysrq; else echo denied sysrq; fi; "
    "mount -o remount,rw /proc/sys 2>/dev/null && echo REMOUNTED; "
    "mount -t proc proc /mnt 2>/dev/null && echo MOUNTED-PROC; "
    "grep ' /proc/sys ' /proc/self/mountinfo; true"
)


def test_proc_sys_read_only(sandbox: Sandbox) -> None:
    host_core = Path("/proc/sys/kernel/core_pattern").read_text()
    for _ in range(REPEAT):
        out = run_container(sandbox, ["sh", "-c", PROC_SYS_ATTEMPTS])
        assert "WROTE" not in out and "REMOUNTED" not in out and "MOUNTED-PROC" not in out, out
        assert out.count("denied") == 7, out
        mount_line = [line for line in out.splitlines() if " /proc/sys " in line]
        assert mount_line and " ro," in f" {mount_line[0].split()[5]},", out
    assert Path("/proc/sys/kernel/core_pattern").read_text() == host_core


# -- capabilities -----------------------------------------------------------------------------------


def _status_fields(out: str) -> dict[str, str]:
    fields = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Uid", "Gid"):
            fields[key] = value.strip()
    return fields


def _caps(fields: dict[str, str], key: str) -> int:
    return int(fields[key], 16)


CAP_CASES: list[tuple[str, dict[str, Any], dict[str, int]]] = [
    (
        "root-default",
        {},
        {
            "CapEff": cap_mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
            "CapPrm": cap_mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
            "CapBnd": cap_mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
            "CapInh": 0,
            "CapAmb": 0,
        },
    ),
    (
        "user-ambient",
        {
            "user": {"uid": 1000, "gid": 1000},
            "capabilities": {
                k: ["CAP_NET_BIND_SERVICE"]
                for k in ("bounding", "effective", "permitted", "inheritable", "ambient")
            },
        },
        {k: cap_mask(["CAP_NET_BIND_SERVICE"]) for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb")},
    ),
    (
        "user-no-ambient",
        {
            "user": {"uid": 1000, "gid": 1000},
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"],
                "inheritable": [],
            },
        },
        {
            "CapEff": 0,
            "CapPrm": 0,
            "CapAmb": 0,
            "CapInh": 0,
            "CapBnd": cap_mask(["CAP_KILL", "CAP_NET_BIND_SERVICE"]),
        },
    ),
    (
        "root-empty",
        {"capabilities": {"bounding": [], "effective": [], "permitted": []}},
        {"CapEff": 0, "CapPrm": 0, "CapBnd": 0, "CapInh": 0, "CapAmb": 0},
    ),
]


@pytest.mark.parametrize("case", CAP_CASES, ids=[c[0] for c in CAP_CASES])
def test_capabilities_after_exec_match_config(
    sandbox: Sandbox, case: tuple[str, dict[str, Any], dict[str, int]]
) -> None:
    _name, process, expected = case
    for _ in range(REPEAT):
        conf = _config(["cat", "/proc/self/status"])
        conf["process"] = {**conf["process"], **process}
        out, _cid = bundles.run_and_get_output(sandbox, conf)
        fields = _status_fields(out)
        got = {k: _caps(fields, k) for k in expected}
        assert got == expected, {k: (hex(got[k]), hex(expected[k])) for k in expected}
        assert fields["NoNewPrivs"] == "1"


def test_setuid_binary_regains_nothing_with_no_new_privileges(sandbox: Sandbox) -> None:
    """A setuid-root busybox in the rootfs, run as nobody: no uid 0, no capability."""
    for _ in range(REPEAT):
        # busybox picks its applet from argv[0]: the setuid copy is named after `cat`.
        conf = _config(["/suid/cat", "/proc/self/status"])
        conf["process"]["user"] = {"uid": 65534, "gid": 65534}
        c = Container(sandbox, conf)
        (c.host_bundle / "rootfs" / "suid").mkdir()
        suid = c.host_bundle / "rootfs" / "suid" / "cat"
        suid.write_bytes(bundles.BUSYBOX.read_bytes())
        os.chown(suid, 0, 0)
        os.chmod(suid, 0o4755)
        out_path = c.host_bundle / "output"
        with out_path.open("w") as out:
            proc = c.rt("run", "--bundle", c.bundle, c.id, stdout=out, stderr=out, capture_output=False)
        output = out_path.read_text()
        assert proc.returncode == 0, output
        fields = _status_fields(output)
        assert fields["Uid"].split() == ["65534"] * 4, fields
        assert _caps(fields, "CapEff") == 0 and _caps(fields, "CapPrm") == 0, fields
        assert fields["NoNewPrivs"] == "1"
        bundles.delete_container(sandbox, c.id)
