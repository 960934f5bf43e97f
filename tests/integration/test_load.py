# SPDX-License-Identifier: Apache-2.0
"""Load (issue 8, part 3): parallel creates racing for the same ids, long create/start/delete runs.

The 200-cycle run is marked `slow`; the default suite runs a 20-cycle version of it.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bundles
import pytest
from test_faults import assert_no_leak, idler_pids
from test_lifecycle import ROOT, Container

from oci_systemd.devtools.sandbox import Sandbox

IDS = 50
COPIES = 2  # 100 creates in all, two per id
WORKERS = 25


def _container(sb: Sandbox, args: list[str]) -> Container:
    conf = bundles.base_config()
    conf["process"]["args"] = args
    return Container(sb, conf)


def _create_attempt(c: Container, n: int) -> tuple[str, int, str]:
    """One `create` of c.id; output to its own file (a created idler keeps its stdio open)."""
    path: Path = c.host_bundle / f"output-{n}"
    with path.open("w") as out:
        proc = c.rt("create", "--bundle", c.bundle, c.id, stdout=out, stderr=out, capture_output=False)
    return c.id, int(proc.returncode), path.read_text()


def _our_units(sb: Sandbox, ids: set[str]) -> list[str]:
    out = sb.run(
        ["systemctl", "list-units", "--all", "--no-legend", "--plain", "oci-systemd-*"],
        capture_output=True,
        text=True,
    ).stdout
    return [line for line in out.splitlines() if any(cid in line for cid in ids)]


def test_parallel_creates_with_duplicate_ids(sandbox: Sandbox) -> None:
    before = idler_pids(sandbox)
    containers = [_container(sandbox, ["sleep", "1000"]) for _ in range(IDS)]
    attempts = [(c, n) for n in range(COPIES) for c in containers]
    t0 = time.monotonic()
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda a: _create_attempt(*a), attempts))
    elapsed = time.monotonic() - t0
    print(f"{len(attempts)} parallel creates in {elapsed:.1f}s")

    by_id: dict[str, list[tuple[int, str]]] = {}
    for cid, rc, out in results:
        by_id.setdefault(cid, []).append((rc, out))
    for cid, outcomes in by_id.items():
        winners = [o for o in outcomes if o[0] == 0]
        losers = [o for o in outcomes if o[0] != 0]
        assert len(winners) == 1, f"{cid}: {outcomes}"
        for rc, out in losers:
            assert rc == 1, out
            # One clean line, runc's wording: no traceback, no half-done work reported.
            assert f"container with id exists: {cid}" in out, out
            assert "Traceback" not in out, out

    listed = json.loads(bundles.run_runtime(sandbox, ["list", "--format", "json"]).stdout)
    statuses = {s["id"]: s["status"] for s in listed}
    for c in containers:
        assert statuses.get(c.id) == "created", (c.id, statuses.get(c.id))
    # Every pid distinct and alive: no two creates share (or lost) an init.
    pids = [int(c.state()["pid"]) for c in containers]
    assert len(set(pids)) == IDS

    with ThreadPoolExecutor(WORKERS) as pool:
        rcs = list(pool.map(lambda c: int(c.rt("delete", "--force", c.id).returncode), containers))
    assert rcs == [0] * IDS
    assert not _our_units(sandbox, {c.id for c in containers})
    for c in containers:
        assert_no_leak(sandbox, c, before)


def test_parallel_start_and_delete_race(sandbox: Sandbox) -> None:
    """start, kill and delete --force racing on the same containers: each ends deleted, no leaks."""
    before = idler_pids(sandbox)
    containers = [_container(sandbox, ["sleep", "1000"]) for _ in range(10)]
    with ThreadPoolExecutor(WORKERS) as pool:
        assert list(pool.map(lambda c: int(c.create().returncode), containers)) == [0] * 10

    def op(job: tuple[Container, str]) -> tuple[int, str]:
        c, what = job
        args = {"start": ["start", c.id], "kill": ["kill", c.id, "KILL"], "delete": ["delete", "-f", c.id]}
        proc = c.rt(*args[what])
        return int(proc.returncode), proc.stderr

    jobs = [(c, what) for c in containers for what in ("start", "kill", "delete")]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(op, jobs))
    for (c, what), (rc, err) in zip(jobs, results, strict=True):
        if what == "delete":
            assert rc == 0, (c.id, err)
        else:
            # Losing the race is fine, but only with a clean, known error.
            assert rc == 0 or any(
                m in err for m in ("container does not exist", "not running", "has stopped")
            ), (c.id, what, err)
            assert "Traceback" not in err
    for c in containers:
        assert_no_leak(sandbox, c, before)


def _fd_count(sb: Sandbox, pid: int) -> int:
    return len(list(sb.host_path(f"/proc/{pid}/fd").iterdir()))


def _rss_kb(sb: Sandbox, pid: int) -> int:
    for line in sb.host_path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _daemons(sb: Sandbox) -> dict[str, int]:
    """pid (inside the sandbox) of its systemd, D-Bus daemon and journald."""
    found = {"systemd": 1}
    for name in ("dbus-daemon", "systemd-journald", "dbus-broker"):
        out = sb.run(["pidof", "-s", name], capture_output=True, text=True).stdout.strip()
        if out:
            found[name] = int(out)
    return found


def _state_dir_usage(sb: Sandbox) -> tuple[int, int]:
    """(entries, bytes) below the runtime's state root."""
    root = sb.host_path(ROOT)
    if not root.exists():
        return 0, 0
    entries = list(root.rglob("*"))
    return len(entries), sum(p.lstat().st_size for p in entries)


def _run_df(sb: Sandbox) -> int:
    out = sb.run(["df", "-k", "--output=used", "/run"], capture_output=True, text=True).stdout
    return int(out.split()[-1])


def _cycle(sb: Sandbox, c: Container) -> None:
    assert c.create().returncode == 0, c.output()
    assert c.rt("start", c.id).returncode == 0
    proc = c.rt("delete", "--force", c.id)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "cycles", [20, pytest.param(200, marks=pytest.mark.slow)], ids=["20-cycles", "200-cycles"]
)
def test_sequential_cycles_leak_nothing(sandbox: Sandbox, cycles: int) -> None:
    before = idler_pids(sandbox)
    # One bundle for every cycle: the id is re-used, as a container engine restarting it would.
    c = _container(sandbox, ["sleep", "1000"])
    warmup = 5
    for _ in range(warmup):
        _cycle(sandbox, c)
    daemons = _daemons(sandbox)
    assert "dbus-daemon" in daemons or "dbus-broker" in daemons, daemons
    fds0 = {name: _fd_count(sandbox, pid) for name, pid in daemons.items()}
    rss0 = {name: _rss_kb(sandbox, pid) for name, pid in daemons.items()}
    usage0 = _state_dir_usage(sandbox)
    df0 = _run_df(sandbox)
    t0 = time.monotonic()
    for _ in range(cycles):
        _cycle(sandbox, c)
    elapsed = time.monotonic() - t0
    assert _daemons(sandbox) == daemons, "a daemon restarted during the run"
    fds1 = {name: _fd_count(sandbox, pid) for name, pid in daemons.items()}
    rss1 = {name: _rss_kb(sandbox, pid) for name, pid in daemons.items()}
    report: dict[str, Any] = {
        "cycles": cycles,
        "seconds": round(elapsed, 1),
        "fds": {k: (fds0[k], fds1[k]) for k in fds0},
        "rss_kb": {k: (rss0[k], rss1[k]) for k in rss0},
        "state_dir": (usage0, _state_dir_usage(sandbox)),
        "run_df_kb": (df0, _run_df(sandbox)),
    }
    print(report)
    for name in daemons:
        # A leak of one fd per cycle would show as `cycles`; allow a little daemon-internal churn.
        assert fds1[name] - fds0[name] <= 3, report
    assert _state_dir_usage(sandbox) == usage0, report
    assert not _our_units(sandbox, {c.id}), report
    assert _run_df(sandbox) - df0 <= 64, report
    assert_no_leak(sandbox, c, before)
