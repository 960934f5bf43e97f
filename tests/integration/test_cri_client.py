# SPDX-License-Identifier: Apache-2.0
"""The parts of the CRI clients (cri_client, cri_stream) that need no containerd: the CRI log
format, websocket frames of Kubernetes' channel protocol, the exec status, the stubs."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import cri_client
import cri_stream
import pytest


def test_cri_log_lines_joins_partial_lines_per_stream(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text(
        "2026-12-01T00:00:00.1Z stdout P abc\n"
        "2026-12-01T00:00:00.2Z stderr F oops\n"
        "2026-12-01T00:00:00.3Z stdout P def\n"
        "2026-12-01T00:00:00.4Z stdout F ghi with spaces\n"
        "2026-12-01T00:00:00.5Z stdout F\n"
    )
    assert cri_client.read_cri_log(log) == [
        ("stderr", "oops"),
        ("stdout", "abcdefghi with spaces"),
        ("stdout", ""),
    ]


def frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        return head + bytes([len(payload)]) + payload
    if len(payload) < 1 << 16:
        return head + bytes([126]) + struct.pack("!H", len(payload)) + payload
    return head + bytes([127]) + struct.pack("!Q", len(payload)) + payload


def test_websocket_messages_lengths_fragments_pings_and_close() -> None:
    big = b"\x01" + b"x" * 70000
    wire = (
        frame(2, b"\x01out")
        + frame(2, b"\x02e", fin=False)
        + frame(9, b"ping")
        + frame(0, b"rr")
        + frame(2, b"\x01" + b"y" * 300)
        + frame(2, big)
        + frame(8, b"")
        + frame(2, b"\x01after close")
    )
    found = cri_stream.messages(io.BufferedReader(io.BytesIO(wire)))
    assert found == [b"\x01out", b"\x02err", b"\x01" + b"y" * 300, big]


def test_collect_sorts_channels_and_reads_the_status() -> None:
    causes = b'"causes":[{"reason":"ExitCode","message":"5"}]'
    status = b'\x03{"status":"Failure","reason":"NonZeroExitCode","details":{' + causes + b"}}"
    wire = frame(2, b"\x01") + frame(2, b"\x01o\n") + frame(2, b"\x02e\n") + frame(2, status)
    done = cri_stream.collect(io.BufferedReader(io.BytesIO(wire)))
    assert done == cri_client.ExecSyncResult(5, b"o\n", b"e\n")


def test_exec_status() -> None:
    assert cri_stream.exit_code(b"") == 0
    assert cri_stream.exit_code(b'{"metadata":{},"status":"Success"}') == 0
    with pytest.raises(cri_stream.StreamError, match="no such container"):
        cri_stream.exit_code(b'{"status":"Failure","message":"no such container"}')


def test_stubs_compile_and_carry_the_calls_the_tests_make() -> None:
    api = cri_client.api()
    assert api is cri_client.api()  # compiled once per process
    service = api.messages.DESCRIPTOR.services_by_name["RuntimeService"]
    assert {m.name for m in service.methods} >= {
        "Version", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
        "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
        "ContainerStatus", "ListContainers", "ExecSync", "Exec",
    }  # fmt: skip
    # Upstream's field numbers (kubernetes/cri-api v0.25.0), which the wire format depends on.
    fields = api.messages.ContainerConfig.DESCRIPTOR.fields_by_name
    assert (fields["log_path"].number, fields["linux"].number) == (11, 15)
