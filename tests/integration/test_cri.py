# SPDX-License-Identifier: Apache-2.0
"""Kubernetes' path: containerd's CRI plugin with oci-systemd as a runtime handler, inside the
private systemd (issue 16). Every scenario runs with the `runc` handler too.

containerd runs as a transient service in a network namespace of its own (engines.CRI_NETNS),
with a CNI bridge there; pods' cgroup parents are slices, as with the kubelet's systemd driver.
The CRI is driven with crictl where it is installed and with the gRPC client of cri_client.py
otherwise (cri_driver; OCI_SYSTEMD_CRI_CLIENT=crictl|python forces one).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import cri_driver
import engines
import pytest
from cri_client import CriError
from cri_driver import CriDriver
from engines import CRI_RUNTIME_ROOTS, IMAGE, CriContainerd, Podman, text, wait_for

from oci_systemd.devtools.sandbox import Sandbox

HANDLERS = ["oci-systemd", "runc"]


class Cri:
    """The engine and what drives it."""

    def __init__(self, engine: CriContainerd, driver: CriDriver) -> None:
        self.engine = engine
        self.sb = engine.sb
        self.driver = driver


@pytest.fixture(scope="module")
def cri(sandbox: Sandbox) -> Iterator[Cri]:
    engines.require_cri()
    engine = CriContainerd(sandbox, f"engines-cri-{secrets.token_hex(3)}")
    driver = cri_driver.choose(engine)
    engine.start(answering=lambda: _answers(driver))
    try:
        engine.import_images(Podman(sandbox))
        yield Cri(engine, driver)
    finally:
        driver.close()
        engine.stop()


def _answers(driver: CriDriver) -> bool:
    try:
        driver.version()
    except CriError:
        return False
    return True


class Pod:
    """One pod sandbox, its containers, and what must be gone after it."""

    def __init__(self, cri: Cri, handler: str, *, host_network: bool = False) -> None:
        self.cri = cri
        self.driver = cri.driver
        self.handler = handler
        self.name = f"pod{secrets.token_hex(4)}"
        # The kubelet's systemd driver names pods' slices kubepods-...-pod<uid>.slice.
        self.slice = f"kubepods-pod{self.name}.slice"
        self.dir = f"{engines.CRI_DIR}/pods/{self.name}"
        cri.sb.host_path(self.dir).mkdir(parents=True)
        self.config: dict[str, Any] = {
            "metadata": {"name": self.name, "namespace": "default", "uid": self.name, "attempt": 0},
            "log_directory": self.dir,
            "linux": {
                "cgroup_parent": self.slice,
                "security_context": {"namespace_options": {"network": 2 if host_network else 0}},
            },
        }
        self.id = ""
        self.containers: list[str] = []

    def run(self) -> str:
        self.id = self.driver.run_pod(self.config, self.handler)
        return self.id

    def container(self, name: str, command: list[str], **extra: Any) -> str:
        """CreateContainer (in this pod) of a busybox container; its id."""
        doc: dict[str, Any] = {
            "metadata": {"name": name},
            "image": {"image": IMAGE},
            "command": command,
            "log_path": f"{name}.log",
        }
        doc.update(extra)
        cid = self.driver.create(self.id, doc, self.config)
        self.containers.append(cid)
        return cid

    def state(self, cid: str) -> str:
        return str(self.driver.status(cid)["state"])

    def remove(self) -> None:
        """stopp + rmp, then nothing of the pod may be left."""
        if self.id:
            self.driver.stop_pod(self.id)
            self.driver.remove_pod(self.id)
        self.cri.sb.run(["systemctl", "stop", self.slice], capture_output=True)
        assert_nothing_left(self.cri.sb, self.handler, [self.id, *self.containers])


def assert_nothing_left(sb: Sandbox, handler: str, ids: list[str]) -> None:
    for cid in filter(None, ids):
        assert_gone(sb, handler, cid)
    netns = sb.host_path("/run/netns")
    left = sorted(p.name for p in netns.iterdir()) if netns.is_dir() else []
    assert left == [engines.CRI_NETNS], f"network namespaces left: {left}"


def assert_gone(sb: Sandbox, handler: str, cid: str) -> None:
    wait_for(lambda: not [u for u in cri_scopes(sb) if cid in u], timeout=15, what=f"no scope of {cid}")
    assert cid not in engines.state_entries(sb, CRI_RUNTIME_ROOTS[handler]), f"state of {cid} left"
    assert not engines.sandbox_mounts_mentioning(sb, cid), f"mounts of {cid} left"
    wait_for(lambda: not engines.processes_mentioning(sb, cid), timeout=10, what="no process")


def cri_scopes(sb: Sandbox) -> list[str]:
    proc = sb.run(
        ["systemctl", "list-units", "--all", "--no-legend", "--plain", "cri-containerd-*"],
        capture_output=True,
        text=True,
    )
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture(params=HANDLERS)
def pod(request: pytest.FixtureRequest, cri: Cri) -> Iterator[Pod]:
    p = Pod(cri, request.param)
    try:
        yield p
    finally:
        p.remove()


def wait_state(p: Pod, cid: str, state: str, timeout: float = 20) -> dict[str, Any]:
    wait_for(lambda: p.state(cid) == state, timeout=timeout, what=f"{cid} {state}")
    return p.driver.status(cid)


def test_pod_and_container_lifecycle(pod: Pod) -> None:
    """runp, create, start, exec -s, exec, logs, stop, rm, stopp, rmp: every step as with runc."""
    driver = pod.driver
    assert driver.version()["RuntimeApiVersion"] == "v1"
    pod.run()
    assert driver.pod_status(pod.id)["state"] == "SANDBOX_READY" and pod.id in driver.pods()
    # A line longer than containerd's 16 KiB log line: the log file has it as P(artial) lines.
    script = "echo hello-from-cri; head -c 20000 /dev/zero | tr '\\0' x; echo; exec sleep 1000"
    cid = pod.container("web", ["sh", "-c", script])
    assert pod.state(cid) == "CONTAINER_CREATED" and driver.containers(pod.id) == [cid]
    driver.start(cid)
    wait_state(pod, cid, "CONTAINER_RUNNING")
    synced = driver.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2"])
    if driver.exec_sync_merges:
        assert synced.exit_code == 0 and synced.stdout.split() == ["out", "err"], synced
    else:
        assert (synced.exit_code, synced.stdout, synced.stderr) == (0, "out\n", "err\n"), synced
    failed = driver.exec_sync(cid, ["sh", "-c", "exit 7"])
    assert failed.exit_code == 7, failed
    streamed = driver.exec(cid, ["cat", "/proc/self/cmdline"])
    assert (streamed.exit_code, streamed.stdout) == (0, "cat\x00/proc/self/cmdline\x00"), streamed
    streamed = driver.exec(cid, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert (streamed.exit_code, streamed.stdout, streamed.stderr) == (5, "out\n", "err\n"), streamed
    logged = "hello-from-cri\n" + "x" * 20000 + "\n"
    wait_for(lambda: driver.logs(cid) == logged, timeout=10, what="the log lines")
    assert " stdout P " in pod.cri.sb.host_path(f"{pod.dir}/web.log").read_text()
    driver.stop(cid, 5)
    assert pod.state(cid) == "CONTAINER_EXITED"
    driver.remove(cid)
    assert driver.containers(pod.id) == []
    driver.stop_pod(pod.id)
    assert driver.pod_status(pod.id)["state"] == "SANDBOX_NOTREADY"


def test_container_that_exits_reaches_exited_with_its_code(pod: Pod) -> None:
    """The regression of issue 16: containerd's `kill --all <id> 9` after the init exited (its
    scope collected) failed, the container stayed RUNNING and stopp/rmp hung."""
    pod.run()
    cid = pod.container("job", ["sh", "-c", "exit 3"])
    pod.driver.start(cid)
    status = wait_state(pod, cid, "CONTAINER_EXITED")
    assert status["exitCode"] == 3
    pod.driver.remove(cid)
    started = time.monotonic()
    pod.driver.stop_pod(pod.id)
    assert time.monotonic() - started < 20


def test_stopp_and_rmp_of_a_pod_with_a_running_container(pod: Pod) -> None:
    pod.run()
    cid = pod.container("sleeper", ["sleep", "1000"])
    pod.driver.start(cid)
    wait_state(pod, cid, "CONTAINER_RUNNING")
    pod.driver.stop_pod(pod.id)
    assert pod.state(cid) == "CONTAINER_EXITED"
    pod.driver.remove_pod(pod.id)
    with pytest.raises(CriError):
        pod.driver.status(cid)
    assert pod.id not in pod.driver.pods()
    pod.id = ""  # removed: nothing left for the fixture to stop


def test_read_only_rootfs_and_run_as_user_and_group(pod: Pod) -> None:
    pod.run()
    security = {"readonly_rootfs": True, "run_as_user": {"value": 1234}, "run_as_group": {"value": 5678}}
    cid = pod.container("locked", ["sleep", "1000"], linux={"security_context": security})
    pod.driver.start(cid)
    wait_state(pod, cid, "CONTAINER_RUNNING")
    ids = pod.driver.exec_sync(cid, ["sh", "-c", "id -u; id -g"])
    assert ids.stdout.split() == ["1234", "5678"], ids
    touched = pod.driver.exec_sync(cid, ["touch", "/x"])
    assert touched.exit_code != 0 and "Read-only file system" in touched.stderr, touched


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
        pod.driver.start(cid)
        wait_state(pod, cid, "CONTAINER_RUNNING")
        # A mount made on the host after the container started reaches it.
        _sh(sb, f"mount -t tmpfs tmpfs {host_dir}/sub && echo late > {host_dir}/sub/marker")
        seen = pod.driver.exec_sync(cid, ["cat", "/mnt/shared/sub/marker"])
        if propagation:
            assert seen.stdout.strip() == "late", seen
        else:
            assert seen.exit_code != 0 and "No such file" in seen.stderr, seen
        pod.driver.stop(cid, 2)
        pod.driver.remove(cid)
    finally:
        sb.run(["umount", "-R", host_dir], capture_output=True)
    assert not engines.sandbox_mounts_mentioning(sb, host_dir)


def _sh(sb: Sandbox, script: str) -> None:
    proc = engines.run_inside(sb, ["sh", "-c", script])
    assert proc.returncode == 0, text(proc)
