# SPDX-License-Identifier: Apache-2.0
"""One interface to containerd's CRI for tests/integration/test_cri.py, two ways to drive it:
crictl where it is installed (scripts/setup builds it from the Go module proxy), the gRPC client
of cri_client.py everywhere else. OCI_SYSTEMD_CRI_CLIENT=crictl|python chooses; unset, crictl
when it is on PATH.

Requests are dicts in the protobuf JSON mapping (what crictl reads from its config files);
status answers are crictl's `inspect -o json` "status" (lowerCamelCase, enum names). A failed
call raises CriError whichever the driver.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from typing import Any, Protocol

import cri_client
import cri_stream
from cri_client import CriClient, CriError, ExecSyncResult
from engines import CRI_NETNS, CriContainerd, text

ENV = "OCI_SYSTEMD_CRI_CLIENT"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


class CriDriver(Protocol):
    name: str
    # crictl 1.26's `exec -s` prints the command's stdout and then its stderr, both to its
    # stdout (each followed by an empty line): the two cannot be told apart.
    exec_sync_merges: bool

    def version(self) -> dict[str, str]: ...
    def run_pod(self, config: dict[str, Any], handler: str) -> str: ...
    def stop_pod(self, pod_id: str) -> None: ...
    def remove_pod(self, pod_id: str) -> None: ...
    def pod_status(self, pod_id: str) -> dict[str, Any]: ...
    def pods(self) -> list[str]: ...
    def create(self, pod_id: str, config: dict[str, Any], pod_config: dict[str, Any]) -> str: ...
    def start(self, cid: str) -> None: ...
    def stop(self, cid: str, timeout: int) -> None: ...
    def remove(self, cid: str) -> None: ...
    def status(self, cid: str) -> dict[str, Any]: ...
    def containers(self, pod_id: str) -> list[str]: ...
    def exec_sync(self, cid: str, argv: list[str], timeout: int = 30) -> ExecResult: ...
    def exec(self, cid: str, argv: list[str]) -> ExecResult: ...
    def logs(self, cid: str) -> str: ...
    def close(self) -> None: ...


def choose(cri: CriContainerd) -> CriDriver:
    wanted = os.environ.get(ENV, "")
    if wanted not in ("", "crictl", "python"):
        raise ValueError(f"{ENV}={wanted!r}: want crictl or python")
    if wanted == "crictl" or (not wanted and shutil.which("crictl")):
        return Crictl(cri)
    return Python(cri)


class Crictl:
    """crictl in containerd's network namespace (CriContainerd.crictl)."""

    name = "crictl"
    exec_sync_merges = True

    def __init__(self, cri: CriContainerd) -> None:
        self.cri = cri
        self.requests = f"{cri.dir}/crictl-requests"
        cri.sb.host_path(self.requests).mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass

    def __call__(self, *args: str) -> str:
        proc = self.cri.crictl(*args)
        if proc.returncode != 0:
            raise CriError(f"crictl {' '.join(args)}", text(proc))
        return proc.stdout

    def file(self, doc: dict[str, Any]) -> str:
        """A request as the JSON file crictl reads (inside the sandbox)."""
        path = f"{self.requests}/{secrets.token_hex(6)}.json"
        self.cri.sb.host_path(path).write_text(json.dumps(doc))
        return path

    def version(self) -> dict[str, str]:
        pairs = (line.split(":", 1) for line in self("version").splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def run_pod(self, config: dict[str, Any], handler: str) -> str:
        return self("runp", "--runtime", handler, self.file(config)).strip()

    def stop_pod(self, pod_id: str) -> None:
        self("stopp", pod_id)

    def remove_pod(self, pod_id: str) -> None:
        self("rmp", pod_id)

    def pod_status(self, pod_id: str) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self("inspectp", "-o", "json", pod_id))["status"]
        return status

    def pods(self) -> list[str]:
        return self("pods", "-q").split()

    def create(self, pod_id: str, config: dict[str, Any], pod_config: dict[str, Any]) -> str:
        return self("create", pod_id, self.file(config), self.file(pod_config)).strip()

    def start(self, cid: str) -> None:
        self("start", cid)

    def stop(self, cid: str, timeout: int) -> None:
        self("stop", "--timeout", str(timeout), cid)

    def remove(self, cid: str) -> None:
        self("rm", cid)

    def status(self, cid: str) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self("inspect", "-o", "json", cid))["status"]
        return status

    def containers(self, pod_id: str) -> list[str]:
        return self("ps", "-a", "-q", "--pod", pod_id).split()

    def exec_sync(self, cid: str, argv: list[str], timeout: int = 30) -> ExecResult:
        return self.exec_result(["exec", "-s", "--timeout", str(timeout), cid, *argv])

    def exec(self, cid: str, argv: list[str]) -> ExecResult:
        return self.exec_result(["exec", cid, *argv])

    def exec_result(self, args: list[str]) -> ExecResult:
        """crictl 1.26 exits 1 when the command's status is not 0 and says which it was in its
        last stderr line: `exited with N: <the command's stderr>` (exec -s) or `command terminated
        with exit code N` (exec, after the command's own stderr)."""
        proc = self.cri.crictl(*args)
        if proc.returncode == 0:
            return ExecResult(0, proc.stdout, proc.stderr)
        said = re.search(r"(?:exited with|with exit code) (\d+)", proc.stderr)
        if said is None:
            raise CriError(f"crictl {' '.join(args)}", text(proc))
        if args[1] == "-s":
            return ExecResult(int(said.group(1)), proc.stdout, proc.stderr)
        own = proc.stderr.rstrip("\n").rpartition("\n")[0]
        return ExecResult(int(said.group(1)), proc.stdout, own + "\n" if own else "")

    def logs(self, cid: str) -> str:
        proc = self.cri.crictl("logs", cid)
        if proc.returncode != 0:
            raise CriError(f"crictl logs {cid}", text(proc))
        return proc.stdout + proc.stderr


class Python:
    """cri_client.CriClient on containerd's socket, reached from the host through the sandbox's
    root (a unix socket does not care about network namespaces)."""

    name = "python"
    exec_sync_merges = False

    def __init__(self, cri: CriContainerd) -> None:
        self.cri = cri
        self.client = CriClient(cri.sb.host_path(cri.socket))

    def close(self) -> None:
        self.client.close()

    def version(self) -> dict[str, str]:
        # crictl's names: RuntimeName, RuntimeApiVersion, ...
        return {k[0].upper() + k[1:]: str(v) for k, v in self.client.version().items()}

    def run_pod(self, config: dict[str, Any], handler: str) -> str:
        return self.client.run_pod_sandbox(config, handler)

    def stop_pod(self, pod_id: str) -> None:
        self.client.stop_pod_sandbox(pod_id)

    def remove_pod(self, pod_id: str) -> None:
        self.client.remove_pod_sandbox(pod_id)

    def pod_status(self, pod_id: str) -> dict[str, Any]:
        return self.client.pod_sandbox_status(pod_id)

    def pods(self) -> list[str]:
        return [p["id"] for p in self.client.list_pod_sandbox()]

    def create(self, pod_id: str, config: dict[str, Any], pod_config: dict[str, Any]) -> str:
        return self.client.create_container(pod_id, config, pod_config)

    def start(self, cid: str) -> None:
        self.client.start_container(cid)

    def stop(self, cid: str, timeout: int) -> None:
        self.client.stop_container(cid, timeout)

    def remove(self, cid: str) -> None:
        self.client.remove_container(cid)

    def status(self, cid: str) -> dict[str, Any]:
        return self.client.container_status(cid)

    def containers(self, pod_id: str) -> list[str]:
        return [c["id"] for c in self.client.list_containers(pod_id)]

    def exec_sync(self, cid: str, argv: list[str], timeout: int = 30) -> ExecResult:
        return decoded(self.client.exec_sync(cid, argv, timeout))

    def exec(self, cid: str, argv: list[str]) -> ExecResult:
        """The Exec RPC's URL, streamed over a websocket in containerd's network namespace."""
        url = self.client.exec_url(cid, argv)
        return decoded(cri_stream.run(url, self.cri.sb.host_path(f"/run/netns/{CRI_NETNS}")))

    def logs(self, cid: str) -> str:
        """The container's log file, which containerd writes in the CRI log format."""
        log = self.cri.sb.host_path(self.status(cid)["logPath"])
        return "".join(f"{line}\n" for _stream, line in cri_client.read_cri_log(log))


def decoded(done: ExecSyncResult) -> ExecResult:
    out, err = (data.decode(errors="replace") for data in (done.stdout, done.stderr))
    return ExecResult(done.exit_code, out, err)
