# SPDX-License-Identifier: Apache-2.0
"""The remaining runc commands' output shapes: list and ps tables, events as a stream, features."""

from __future__ import annotations

import json
import select
import subprocess
import time

import bundles
from test_lifecycle import start_sleeping, wait_for

from oci_systemd.devtools.sandbox import Sandbox


def test_list_table_and_quiet(sandbox: Sandbox) -> None:
    c = start_sleeping(sandbox)
    try:
        table = bundles.run_runtime(sandbox, ["list"]).stdout.splitlines()
        assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        row = next(line.split() for line in table[1:] if line.startswith(c.id))
        assert row[2] == "running" and row[3] == c.bundle and row[5] == "root"
        quiet = bundles.run_runtime(sandbox, ["list", "-q"]).stdout.split()
        assert c.id in quiet
    finally:
        c.rt("delete", "--force", c.id)


def test_ps_table(sandbox: Sandbox) -> None:
    c = start_sleeping(sandbox)
    try:
        out = c.rt("ps", c.id).stdout.splitlines()
        assert "PID" in out[0].split()
        assert any("sleep 1000" in line for line in out[1:])
        stopped = c.rt("ps", "--format", "json", "nope")
        assert stopped.returncode == 1 and "container does not exist" in stopped.stderr
    finally:
        c.rt("delete", "--force", c.id)


def test_events_stream_ends_when_the_container_stops(sandbox: Sandbox) -> None:
    c = start_sleeping(sandbox)
    try:
        proc = subprocess.Popen(
            [*sandbox.nsenter_argv(), *bundles.runtime_argv(), "events", "--interval", "200ms", c.id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # The first event, then one per interval: wait for three (not for a time, which a loaded
        # machine stretches), then stop the container; the stream must end by itself.
        assert proc.stdout is not None
        first: list[str] = []
        deadline = time.monotonic() + 20
        while len(first) < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                first.append(line)
        assert len(first) == 3, (first, proc.poll())
        assert c.rt("kill", c.id, "KILL").returncode == 0
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        events = [json.loads(line) for line in [*first, *out.splitlines()]]
        assert all(e["type"] == "stats" and e["id"] == c.id for e in events)
        assert {"cpu", "memory", "pids"} <= set(events[0]["data"])
        wait_for(lambda: c.status() == "stopped")
    finally:
        c.rt("delete", "--force", c.id)


def test_events_on_a_stopped_container(sandbox: Sandbox) -> None:
    out = bundles.run_runtime(sandbox, ["events", "--stats", "nope"])
    assert out.returncode == 1 and "container does not exist" in out.stderr
