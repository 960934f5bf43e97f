# SPDX-License-Identifier: Apache-2.0
"""exec's helper and CVE-2019-5736: the process exec forks into the container is the host's
interpreter until it execs, and `/proc/<pid>/exe` leads there. A fork of the runtime (fast) is
only used where no container process can reach it with CAP_SYS_PTRACE; otherwise the helper is
an interpreter started from a read-only mount of it, where a kept fd cannot be reopened for
writing (runtime/verbs/exec.py's _may_fork_exec_helper).

To look at that process deterministically the test holds it before its execve: the container's
seccomp filter has a NOTIFY rule, so the exec'd process hands its notify fd to `exec`, which
connects to listenerPath; that listener's backlog is full, so `exec` (and the process waiting
for it) stay where they are until the test lets go.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator

import bundles
import pytest
from test_lifecycle import Container, wait_for

from oci_systemd.devtools.sandbox import Sandbox

# Inside the sandbox: the pids of the container's cgroup that still run the interpreter, and whether
# their exe is on a read-only mount.
_INSPECT = r"""
import json, os, sys
init = sys.argv[1]
cg = open(f"/proc/{init}/cgroup").read().split("::", 1)[1].strip()
found = {}
for pid in open(f"/sys/fs/cgroup{cg}/cgroup.procs").read().split():
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        ro = bool(os.statvfs(f"/proc/{pid}/exe").f_flag & os.ST_RDONLY)
    except OSError:
        continue
    # The held process: not the init (sleep). Its exe is the interpreter: on its detached
    # read-only mount readlink says "/", else the host's path.
    if pid != init and "busybox" not in exe:
        found[pid] = ro
print(json.dumps(found))
"""


class HeldListener:
    """A seccomp listener that accepts the init's state, then takes no more connections."""

    def __init__(self, sandbox: Sandbox, tag: str) -> None:
        self.inner = f"{bundles.INNER_WORKDIR}/held-{tag}.sock"
        self.host = sandbox.host_path(self.inner)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.host))
        self.server.listen(0)
        self.server.settimeout(5)
        self.kept: list[socket.socket] = []

    def take_one(self) -> None:
        conn, _ = self.server.accept()
        self.kept.append(conn)

    def fill_backlog(self) -> None:
        """One pending connection fills a backlog of 0: the next connect blocks."""
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.connect(str(self.host))
        self.kept.append(filler)

    def release(self) -> None:
        """Take the filler and the held connection: the blocked `exec` goes on."""
        for _ in range(2):
            try:
                self.take_one()
            except TimeoutError:
                return

    def close(self) -> None:
        for s in self.kept:
            s.close()
        self.server.close()


@pytest.fixture
def held(sandbox: Sandbox) -> Iterator[HeldListener]:
    bundles.ensure_rootfs(sandbox)
    h = HeldListener(sandbox, bundles.new_container_id())
    yield h
    h.close()


def _container(sandbox: Sandbox, listener: str, *, ptrace_init: bool) -> Container:
    conf = bundles.base_config()
    conf["process"]["args"] = ["sleep", "1000"]
    if ptrace_init:
        for kind in ("bounding", "effective", "permitted"):
            conf["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")
    conf["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "listenerPath": listener,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    }
    return Container(sandbox, conf)


def _held_exec_helpers(
    sandbox: Sandbox, c: Container, held: HeldListener, *exec_args: str
) -> dict[str, bool]:
    """Run `exec` until its process waits for the listener; {pid: exe on a read-only mount}."""
    proc = subprocess.Popen(
        [*sandbox.nsenter_argv(), *bundles.runtime_argv(), "exec", *exec_args, c.id, "true"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid = str(c.state()["pid"])
    seen: dict[str, bool] = {}
    try:

        def waiting() -> bool:
            out = sandbox.run(["python3", "-I", "-c", _INSPECT, pid], capture_output=True, text=True)
            seen.clear()
            seen.update(json.loads(out.stdout or "{}"))
            return bool(seen)

        wait_for(waiting, timeout=20)
    finally:
        held.release()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    held.fill_backlog()
    return seen


def _start_with_listener(c: Container, held: HeldListener) -> None:
    assert c.create().returncode == 0, c.output()
    start = subprocess.Popen(
        [*c.sb.nsenter_argv(), *bundles.runtime_argv(), "start", c.id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    held.take_one()  # the init's state and notify fd
    _, err = start.communicate(timeout=30)
    assert start.returncode == 0, err
    held.fill_backlog()


@pytest.mark.skipif(bool(os.environ.get("OCI_RUNTIME")), reason="oci-systemd's exec helper")
@pytest.mark.parametrize(
    ("ptrace_init", "exec_args", "read_only"),
    [
        (True, (), True),
        (False, ("--cap", "CAP_SYS_PTRACE"), True),
        (False, (), False),
    ],
    ids=["init-may-ptrace", "exec-may-ptrace", "no-ptrace-fork"],
)
def test_exec_helper_in_reach_of_ptrace_runs_from_a_read_only_interpreter(
    sandbox: Sandbox, held: HeldListener, ptrace_init: bool, exec_args: tuple[str, ...], read_only: bool
) -> None:
    c = _container(sandbox, held.inner, ptrace_init=ptrace_init)
    try:
        _start_with_listener(c, held)
        seen = _held_exec_helpers(sandbox, c, held, *exec_args)
        assert seen and all(ro is read_only for ro in seen.values()), seen
        if exec_args:
            # Once a process that may ptrace was exec'd, later execs stay off the fast path too.
            later = _held_exec_helpers(sandbox, c, held)
            assert later and all(later.values()), later
    finally:
        c.rt("delete", "--force", c.id)
