# SPDX-License-Identifier: Apache-2.0
"""A small client of the CRI v1 gRPC API (the RuntimeService the kubelet calls), for the tests
where crictl cannot be installed (it comes from the Go module proxy, scripts/setup).

The stubs are generated from the vendored tests/integration/cri/api.proto (kubernetes/cri-api
v0.25.0, containerd 1.6's CRI v1) with grpc_tools.protoc, once per process, into a temporary
directory: no generated code is committed. Requests and answers are dicts in the protobuf JSON
mapping (crictl's config files and `inspect -o json` use the same names), so the generated
classes stay behind this module's typed surface.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import json_format

PROTO_DIR = Path(__file__).parent / "cri"


class CriError(Exception):
    """A CRI call that failed: the method, gRPC's status code and containerd's message."""

    def __init__(self, method: str, message: str) -> None:
        super().__init__(f"{method}: {message}")
        self.method = method


@dataclass(frozen=True)
class Api:
    """The generated modules: messages (api_pb2) and the RuntimeService stub (api_pb2_grpc)."""

    messages: ModuleType
    services: ModuleType


@functools.cache
def api() -> Api:
    """Compile api.proto (~0.3 s) the first time it is asked for in this process."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="oci-systemd-cri-stubs-")
    atexit.register(shutil.rmtree, out, True)
    # grpc_tools' own include directory: protoc wants it on the path even with no imports.
    include = Path(protoc.__file__).parent / "_proto"
    argv = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if protoc.main([*argv, str(PROTO_DIR / "api.proto")]) != 0:
        raise RuntimeError(f"grpc_tools.protoc could not compile {PROTO_DIR / 'api.proto'}")
    # api_pb2_grpc imports api_pb2 by its bare name: the directory is on sys.path for the import.
    sys.path.insert(0, out)
    try:
        return Api(importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc"))
    finally:
        sys.path.remove(out)


@dataclass(frozen=True)
class ExecSyncResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


def as_dict(message: Any) -> dict[str, Any]:
    """crictl's JSON of a message: lowerCamelCase names, enum names, default values shown."""
    doc: dict[str, Any] = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return doc


class CriClient:
    """containerd's RuntimeService over its unix socket (a path the caller can connect to: from
    the host, the sandbox's socket is reached through Sandbox.host_path())."""

    def __init__(self, socket_path: str | Path, *, timeout: float = 60) -> None:
        self.api = api()
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix:{socket_path}")
        self.stub = self.api.services.RuntimeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise CriError(method, f"{exc.code().name}: {exc.details()}") from None

    def message(self, name: str, doc: dict[str, Any] | None = None, **fields: Any) -> Any:
        """A request message of api_pb2 from keyword fields and/or a JSON-mapping dict."""
        msg = getattr(self.api.messages, name)(**fields)
        if doc is not None:
            json_format.ParseDict(doc, msg)
        return msg

    def version(self) -> dict[str, Any]:
        return as_dict(self.call("Version", self.message("VersionRequest", version="v1")))

    def run_pod_sandbox(self, config: dict[str, Any], runtime_handler: str) -> str:
        request = self.message("RunPodSandboxRequest", {"config": config}, runtime_handler=runtime_handler)
        return str(self.call("RunPodSandbox", request).pod_sandbox_id)

    def stop_pod_sandbox(self, pod_id: str) -> None:
        self.call("StopPodSandbox", self.message("StopPodSandboxRequest", pod_sandbox_id=pod_id))

    def remove_pod_sandbox(self, pod_id: str) -> None:
        self.call("RemovePodSandbox", self.message("RemovePodSandboxRequest", pod_sandbox_id=pod_id))

    def pod_sandbox_status(self, pod_id: str) -> dict[str, Any]:
        request = self.message("PodSandboxStatusRequest", pod_sandbox_id=pod_id)
        return as_dict(self.call("PodSandboxStatus", request).status)

    def list_pod_sandbox(self) -> list[dict[str, Any]]:
        return [as_dict(p) for p in self.call("ListPodSandbox", self.message("ListPodSandboxRequest")).items]

    def create_container(self, pod_id: str, config: dict[str, Any], pod_config: dict[str, Any]) -> str:
        request = self.message(
            "CreateContainerRequest", {"config": config, "sandbox_config": pod_config}, pod_sandbox_id=pod_id
        )
        return str(self.call("CreateContainer", request).container_id)

    def start_container(self, cid: str) -> None:
        self.call("StartContainer", self.message("StartContainerRequest", container_id=cid))

    def stop_container(self, cid: str, timeout: int) -> None:
        request = self.message("StopContainerRequest", container_id=cid, timeout=timeout)
        self.call("StopContainer", request, timeout=self.timeout + timeout)

    def remove_container(self, cid: str) -> None:
        self.call("RemoveContainer", self.message("RemoveContainerRequest", container_id=cid))

    def container_status(self, cid: str) -> dict[str, Any]:
        request = self.message("ContainerStatusRequest", container_id=cid)
        return as_dict(self.call("ContainerStatus", request).status)

    def list_containers(self, pod_id: str = "") -> list[dict[str, Any]]:
        request = self.message("ListContainersRequest", {"filter": {"pod_sandbox_id": pod_id}})
        return [as_dict(c) for c in self.call("ListContainers", request).containers]

    def exec_sync(self, cid: str, cmd: list[str], timeout: int) -> ExecSyncResult:
        request = self.message("ExecSyncRequest", container_id=cid, cmd=cmd, timeout=timeout)
        resp = self.call("ExecSync", request, timeout=self.timeout + timeout)
        return ExecSyncResult(int(resp.exit_code), bytes(resp.stdout), bytes(resp.stderr))

    def exec_url(self, cid: str, cmd: list[str]) -> str:
        """Exec: the URL of containerd's streaming server where the command runs once connected
        (stdout and stderr, no stdin, no tty)."""
        request = self.message("ExecRequest", container_id=cid, cmd=cmd, stdout=True, stderr=True)
        return str(self.call("Exec", request).url)


def read_cri_log(path: Path) -> list[tuple[str, str]]:
    """The (stream, text) lines of a CRI log file: `<RFC3339 time> <stdout|stderr> <F|P> <text>`,
    a P (partial) line continued by the next ones of its stream up to an F (full) one."""
    lines: list[tuple[str, str]] = []
    pending: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3:
            continue  # a line being written
        _time, stream, tag = parts[:3]
        chunk = pending.pop(stream, "") + (parts[3] if len(parts) == 4 else "")
        if tag == "P":
            pending[stream] = chunk
        else:
            lines.append((stream, chunk))
    return lines
