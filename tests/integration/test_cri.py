# SPDX-License-Identifier: Apache-2.0
"""Kubernetes' path: containerd's CRI plugin with oci-systemd as a runtime handler, driven with
crictl, inside the private systemd (issue 16). Every scenario runs with the `runc` handler too.

containerd runs as a transient service in a network namespace of its own (engines.CRI_NETNS),
with a CNI bridge there; pods' cgroup parents are slices, as with the kubelet's systemd driver.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import engines
import pytest
from engines import CRI_RUNTIME_ROOTS, IMAGE, CriContainerd, Podman, text, wait_for

from oci_systemd.sandbox import Sandbox

HANDLERS = ["oci-systemd", "runc"]


@pytest.fixture(scope="module")
def cri(sandbox: Sandbox) -> Iterator[CriContainerd]:
    engines.require_crictl()
    engine = CriContainerd(sandbox, f"engines-cri-{secrets.token_hex(3)}")
    engine.start()
    try:
        engine.import_images(Podman(sandbox))
        yield engine
    finally:
        engine.stop()


class Pod:
    """One pod sandbox through crictl, its containers, and what must be gone after it."""

    def __init__(self, cri: CriContainerd, handler: str, *, host_network: bool = False) -> None:
        self.cri = cri
        self.handler = handler
        self.name = f"pod{secrets.token_hex(4)}"
        # The kubelet's systemd driver names pods' slices kubepods-...-pod<uid>.slice.
        self.slice = f"kubepods-pod{self.name}.slice"
        self.dir = f"{engines.CRI_DIR}/pods/{self.name}"
        cri.sb.host_path(self.dir).mkdir(parents=True)
        self.config = self.write(
            "pod.json",
            {
                "metadata": {"name": self.name, "namespace": "default", "uid": self.name, "attempt": 0},
                "log_directory": self.dir,
                "linux": {
                    "cgroup_parent": self.slice,
                    "security_context": {"namespace_options": {"network": 2 if host_network else 0}},
                },
            },
        )
        self.id = ""
        self.containers: list[str] = []

    def write(self, name: str, doc: dict[str, Any]) -> str:
        path = f"{self.dir}/{name}"
        self.cri.sb.host_path(path).write_text(json.dumps(doc))
        return path

    def crictl(self, *args: str, ok: bool = True, **kw: Any) -> Any:
        proc = self.cri.crictl(*args, **kw)
        if ok:
            assert proc.returncode == 0, f"crictl {' '.join(args)}\n{text(proc)}"
        return proc

    def run(self) -> str:
        self.id = self.crictl("runp", "--runtime", self.handler, self.config).stdout.strip()
        return self.id

    def container(self, name: str, command: list[str], **extra: Any) -> str:
        """crictl create (in this pod) of a busybox container; its id."""
        doc: dict[str, Any] = {
            "metadata": {"name": name},
            "image": {"image": IMAGE},
            "command": command,
            "log_path": f"{name}.log",
        }
        doc.update(extra)
        config = self.write(f"{name}.json", doc)
        cid = str(self.crictl("create", self.id, config, self.config).stdout.strip())
        self.containers.append(cid)
        return cid

    def inspect(self, cid: str) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.crictl("inspect", "-o", "json", cid).stdout)["status"]
        return status

    def exec_sync(self, cid: str, *command: str) -> Any:
        return self.crictl("exec", "-s", cid, *command, ok=False)

    def remove(self) -> None:
        """stopp + rmp, then nothing of the pod may be left."""
        if self.id:
            self.crictl("stopp", self.id)
            self.crictl("rmp", self.id)
        self.cri.sb.run(["systemctl", "stop", self.slice], capture_output=True)
        assert_nothing_left(self.cri, self.handler, [self.id, *self.containers])


def assert_nothing_left(cri: CriContainerd, handler: str, ids: list[str]) -> None:
    sb = cri.sb
    for cid in filter(None, ids):
        wait_for(
            lambda cid=cid: not [u for u in cri_scopes(sb) if cid in u],
            timeout=15,
            what=f"no scope of {cid}",
        )
        assert cid not in engines.state_entries(sb, CRI_RUNTIME_ROOTS[handler]), f"state of {cid} left"
        assert not engines.sandbox_mounts_mentioning(sb, cid), f"mounts of {cid} left"
        wait_for(lambda cid=cid: not engines.processes_mentioning(sb, cid), timeout=10, what="no process")
    netns = sb.host_path("/run/netns")
    left = sorted(p.name for p in netns.iterdir()) if netns.is_dir() else []
    assert left == [engines.CRI_NETNS], f"network namespaces left: {left}"


def cri_scopes(sb: Sandbox) -> list[str]:
    proc = sb.run(
        ["systemctl", "list-units", "--all", "--no-legend", "--plain", "cri-containerd-*"],
        capture_output=True,
        text=True,
    )
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture(params=HANDLERS)
def pod(request: pytest.FixtureRequest, cri: CriContainerd) -> Iterator[Pod]:
    p = Pod(cri, request.param)
    try:
        yield p
    finally:
        p.remove()


def wait_state(p: Pod, cid: str, state: str, timeout: float = 20) -> dict[str, Any]:
    wait_for(lambda: p.inspect(cid)["state"] == state, timeout=timeout, what=f"{cid} {state}")
    return p.inspect(cid)


def test_pod_and_container_lifecycle(pod: Pod) -> None:
    """runp, create, start, exec -s, exec, logs, stop, rm, stopp, rmp: every step as with runc."""
    pod.run()
    cid = pod.container("web", ["sh", "-c", "echo hello-from-cri; exec sleep 1000"])
    assert pod.inspect(cid)["state"] == "CONTAINER_CREATED"
    pod.crictl("start", cid)
    wait_state(pod, cid, "CONTAINER_RUNNING")
    synced = pod.exec_sync(cid, "sh", "-c", "echo out; echo err >&2")
    assert synced.returncode == 0 and synced.stdout.split() == ["out", "err"], text(synced)
    # crictl 1.26 reports ExecSync's exit code in its message (and exits 1).
    failed = pod.exec_sync(cid, "sh", "-c", "exit 7")
    assert failed.returncode != 0 and "exited with 7" in failed.stderr, text(failed)
    streamed = pod.crictl("exec", cid, "cat", "/proc/1/cmdline", ok=False)
    assert streamed.returncode == 0, text(streamed)
    wait_for(lambda: "hello-from-cri" in pod.crictl("logs", cid).stdout, timeout=10, what="the log line")
    pod.crictl("stop", "--timeout", "5", cid)
    assert pod.inspect(cid)["state"] == "CONTAINER_EXITED"
    pod.crictl("rm", cid)


def test_container_that_exits_reaches_exited_with_its_code(pod: Pod) -> None:
    """The regression of issue 16: containerd's `kill --all <id> 9` after the init exited (its
    scope collected) failed, the container stayed RUNNING and stopp/rmp hung."""
    pod.run()
    cid = pod.container("job", ["sh", "-c", "exit 3"])
    pod.crictl("start", cid)
    status = wait_state(pod, cid, "CONTAINER_EXITED")
    assert status["exitCode"] == 3
    pod.crictl("rm", cid)
    started = time.monotonic()
    pod.crictl("stopp", pod.id)
    assert time.monotonic() - started < 20


def test_stopp_and_rmp_of_a_pod_with_a_running_container(pod: Pod) -> None:
    pod.run()
    cid = pod.container("sleeper", ["sleep", "1000"])
    pod.crictl("start", cid)
    wait_state(pod, cid, "CONTAINER_RUNNING")
    pod.crictl("stopp", pod.id)
    assert pod.inspect(cid)["state"] == "CONTAINER_EXITED"
    pod.crictl("rmp", pod.id)
    assert pod.crictl("inspect", cid, ok=False).returncode != 0
    pod.id = ""  # removed: nothing left for the fixture to stop


def test_read_only_rootfs_and_run_as_user_and_group(pod: Pod) -> None:
    pod.run()
    security = {"readonly_rootfs": True, "run_as_user": {"value": 1234}, "run_as_group": {"value": 5678}}
    cid = pod.container("locked", ["sleep", "1000"], linux={"security_context": security})
    pod.crictl("start", cid)
    wait_state(pod, cid, "CONTAINER_RUNNING")
    ids = pod.exec_sync(cid, "sh", "-c", "id -u; id -g")
    assert ids.stdout.split() == ["1234", "5678"], text(ids)
    touched = pod.exec_sync(cid, "touch", "/x")
    assert touched.returncode != 0 and "Read-only file system" in touched.stderr, text(touched)


# PROPAGATION_HOST_TO_CONTAINER (rslave) and PROPAGATION_BIDIRECTIONAL (rshared): containerd
# sets linux.rootfsPropagation to the same, and needs the host path on a shared mount.
# PROPAGATION_PRIVATE (0) is the control: the same late mount must not show.
@pytest.mark.parametrize("propagation", [1, 2, 0], ids=["rslave", "rshared", "private"])
def test_mount_propagation_reaches_the_container(pod: Pod, propagation: int) -> None:
    sb = pod.cri.sb
    host_dir = f"{pod.dir}/shared"
    sb.host_path(f"{host_dir}/sub").mkdir(parents=True)
    _sh(sb, f"mount --bind {host_dir} {host_dir} && mount --make-shared {host_dir}")
    try:
        pod.run()
        mount = {"container_path": "/mnt/shared", "host_path": host_dir, "propagation": propagation}
        cid = pod.container("prop", ["sleep", "1000"], mounts=[mount])
        pod.crictl("start", cid)
        wait_state(pod, cid, "CONTAINER_RUNNING")
        # A mount made on the host after the container started reaches it.
        _sh(sb, f"mount -t tmpfs tmpfs {host_dir}/sub && echo late > {host_dir}/sub/marker")
        seen = pod.exec_sync(cid, "cat", "/mnt/shared/sub/marker")
        if propagation:
            assert seen.stdout.strip() == "late", text(seen)
        else:
            assert "No such file" in seen.stdout + seen.stderr, text(seen)
        pod.crictl("stop", "--timeout", "2", cid)
        pod.crictl("rm", cid)
    finally:
        sb.run(["umount", "-R", host_dir], capture_output=True)
    assert not engines.sandbox_mounts_mentioning(sb, host_dir)


def _sh(sb: Sandbox, script: str) -> None:
    proc = engines.run_inside(sb, ["sh", "-c", script])
    assert proc.returncode == 0, text(proc)
