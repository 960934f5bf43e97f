# SPDX-License-Identifier: Apache-2.0
"""Seccomp user notification: `linux.seccomp.listenerPath` and SCMP_ACT_NOTIFY rules.

A small seccomp agent (below, run inside the sandbox) receives the container process state and
the notify fd, and answers every notification with EXDEV through SECCOMP_IOCTL_NOTIF_RECV/SEND:
the container's `mkdir` fails with an error no real mkdir of /tmp/x would give.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bundles
import pytest
from test_lifecycle import Container, wait_for

from oci_systemd.devtools.sandbox import Sandbox

AGENT = r"""
import errno, fcntl, json, os, select, socket, struct, sys, threading
path, out = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path); srv.listen(4)
seen = {"states": [], "calls": []}
lock = threading.Lock()
def save():
    with lock:
        with open(out + ".tmp", "w") as f:
            json.dump(seen, f)
        os.rename(out + ".tmp", out)
NOTIF_RECV, NOTIF_SEND = 0xC0502100, 0xC0182101  # _IOWR('!', 0/1, seccomp_notif/_resp)
def serve(fd):
    poll = select.poll(); poll.register(fd, select.POLLIN)
    while True:
        events = poll.poll(60000)
        if not events or events[0][1] & select.POLLHUP:
            return  # no process uses the filter any more
        notif = bytearray(80)
        try:
            fcntl.ioctl(fd, NOTIF_RECV, notif, True)
        except OSError:
            continue  # the caller died meanwhile
        nid, pid, _fl, nr = struct.unpack_from("QIIi", notif)
        seen["calls"].append({"pid": pid, "nr": nr})
        save()
        try:
            fcntl.ioctl(fd, NOTIF_SEND, struct.pack("QqiI", nid, 0, -errno.EXDEV, 0))
        except OSError:
            pass
print("ready", flush=True)
while True:
    conn, _ = srv.accept()
    msg, fds, _flags, _addr = socket.recv_fds(conn, 65536, 4)
    more = conn.recv(1)  # the runtime closes the connection after one state
    conn.close()
    seen["states"].append({"state": json.loads(msg), "nfds": len(fds), "closed": more == b""})
    save()
    threading.Thread(target=serve, args=(fds[0],), daemon=True).start()
"""


class Agent:
    def __init__(self, sandbox: Sandbox, tag: str) -> None:
        self.socket = f"{bundles.INNER_WORKDIR}/agent-{tag}.sock"
        self.out = sandbox.host_path(f"{bundles.INNER_WORKDIR}/agent-{tag}.json")
        script = sandbox.host_path(f"{bundles.INNER_WORKDIR}/seccomp_agent.py")
        script.write_text(AGENT)
        self.proc = subprocess.Popen(
            [
                *sandbox.nsenter_argv(),
                sys.executable,
                sandbox.inner_path(script),
                self.socket,
                str(self.inner(sandbox)),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def inner(self, sandbox: Sandbox) -> str:
        return sandbox.inner_path(self.out)

    def seen(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.out.read_text())
        return result

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _profile(listener: str, *, notify: bool = True) -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "listenerPath": listener,
        "listenerMetadata": "agent-metadata-1",
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY" if notify else "SCMP_ACT_LOG"}
        ],
    }


@pytest.fixture
def agent(sandbox: Sandbox) -> Iterator[Agent]:
    bundles.ensure_rootfs(sandbox)  # makes the work directory
    a = Agent(sandbox, bundles.new_container_id())
    yield a
    a.stop()


def _container(sandbox: Sandbox, seccomp: dict[str, Any], *, nnp: bool = True) -> Container:
    conf = bundles.base_config()
    conf["process"]["noNewPrivileges"] = nnp
    conf["process"]["args"] = ["sh", "-c", "mkdir /tmp/by-agent; echo mkdir=$?; echo done"]
    conf["linux"]["seccomp"] = seccomp
    conf["root"]["readonly"] = False  # a real mkdir succeeds: only the agent makes it fail
    return Container(sandbox, conf)


def _rootfs_dir(c: Container) -> Path:
    return c.host_bundle / "rootfs" / "tmp" / "by-agent"


# Without noNewPrivileges the filter is loaded early (CAP_SYS_ADMIN still held), with it last.
@pytest.mark.parametrize("nnp", [True, False], ids=["noNewPrivileges", "privileged-load"])
def test_notify_fd_and_state_go_to_the_listener(sandbox: Sandbox, agent: Agent, nnp: bool) -> None:
    c = _container(sandbox, _profile(agent.socket), nnp=nnp)
    try:
        assert c.create().returncode == 0, c.output()
        pid = c.state()["pid"]
        start = c.rt("start", c.id)
        assert start.returncode == 0, start.stderr
        wait_for(lambda: "done" in c.output())
        seen = agent.seen()
        assert len(seen["states"]) == 1, seen
        state = seen["states"][0]["state"]
        assert seen["states"][0]["nfds"] == 1 and seen["states"][0]["closed"], seen
        assert state["fds"] == ["seccompFd"]
        assert state["pid"] == pid
        assert state["metadata"] == "agent-metadata-1"
        assert state["state"]["id"] == c.id
        assert state["state"]["pid"] == pid
        assert state["state"]["bundle"] == c.bundle
        assert "ociVersion" in state and state["state"]["status"] in ("creating", "created")
        # The container saw the agent's answer, and the agent saw the container's call.
        assert "mkdir=1" in c.output(), c.output()
        assert "cross-device" in c.output().lower(), c.output()
        assert not _rootfs_dir(c).exists()
        assert seen["calls"] and all(call["nr"] in (83, 258) for call in seen["calls"]), seen
    finally:
        c.rt("delete", "--force", c.id)


def test_exec_hands_its_own_notify_fd_to_the_listener(sandbox: Sandbox, agent: Agent) -> None:
    c = _container(sandbox, _profile(agent.socket))
    c_conf = json.loads((c.host_bundle / "config.json").read_text())
    c_conf["process"]["args"] = ["sleep", "1000"]
    (c.host_bundle / "config.json").write_text(json.dumps(c_conf))
    try:
        assert c.create().returncode == 0, c.output()
        assert c.rt("start", c.id).returncode == 0
        wait_for(lambda: agent.out.exists())
        proc = c.rt("exec", c.id, "sh", "-c", "mkdir /tmp/by-exec; echo exec-mkdir=$?")
        assert proc.returncode == 0, proc.stderr
        assert "exec-mkdir=1" in proc.stdout and "cross-device" in proc.stderr.lower(), proc
        states = agent.seen()["states"]
        assert len(states) == 2, states
        exec_state = states[1]["state"]
        assert exec_state["pid"] != states[0]["state"]["pid"]  # the exec'd process, not the init
        assert exec_state["metadata"] == "agent-metadata-1"
        assert exec_state["state"]["id"] == c.id
    finally:
        c.rt("delete", "--force", c.id)


def test_listener_path_without_notify_rules_is_ignored(sandbox: Sandbox, agent: Agent) -> None:
    c = _container(sandbox, _profile(agent.socket, notify=False))
    try:
        assert c.create().returncode == 0, c.output()
        assert c.rt("start", c.id).returncode == 0
        wait_for(lambda: "done" in c.output())
        assert "mkdir=0" in c.output(), c.output()
        assert not agent.out.exists(), "the runtime connected to the listener without a NOTIFY rule"
    finally:
        c.rt("delete", "--force", c.id)


def test_unreachable_listener_fails_start(sandbox: Sandbox) -> None:
    c = _container(sandbox, _profile(f"{bundles.INNER_WORKDIR}/no-agent.sock"))
    try:
        assert c.create().returncode == 0, c.output()
        start = c.rt("start", c.id)
        assert start.returncode != 0
        assert "no-agent.sock" in start.stderr, start.stderr
        assert "done" not in c.output(), "the program ran without its agent"
        wait_for(lambda: c.status() == "stopped")
    finally:
        c.rt("delete", "--force", c.id)


@pytest.mark.parametrize(
    ("seccomp", "message"),
    [
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
            },
            "listenerPath",
        ),
        (
            {"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/tmp/x.sock"},
            "default action",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/tmp/x.sock",
                "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}],
            },
            "cannot be used for sendmsg",
        ),
    ],
)
def test_notify_configs_that_cannot_work_are_refused(
    sandbox: Sandbox, seccomp: dict[str, Any], message: str
) -> None:
    c = _container(sandbox, seccomp)
    proc = c.create()
    assert proc.returncode != 0
    assert message in c.output(), c.output()
    assert c.rt("state", c.id).returncode != 0, "a refused create left a container"
