#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Kubernetes' path timed: containerd's CRI with the oci-systemd and runc handlers, via crictl.

    sudo .venv/bin/python benchmarks/cri.py                 # 15 iterations (~1-2 min on 2 cores)
    sudo .venv/bin/python benchmarks/cri.py --iterations 3  # smoke run

Boots its own private systemd and starts containerd there exactly as tests/integration/test_cri.py
does (engines.CriContainerd: CRI plugin, a CNI bridge in containerd's own network namespace, a
busybox pause image, both handlers with SystemdCgroup = true). Per iteration, for each handler in
an order that rotates every iteration: a pod (`runp`), a busybox container in it running `sleep`
(`create`, `start`), one `exec -s <id> true` (ExecSync, what every exec probe sends), then
`stop` of the container and `stopp` + `rmp` of the pod. Each row is the wall time of the crictl
command(s), crictl's own start and the nsenter into the sandbox included (the `crictl version`
row is that floor). The `runc` handler runs through engines.RUNC_WRAPPER (a shell script; for
`create` only, a python3 that drops the limits the sandbox's cgroup2 cannot hold): it adds ~1 ms
to every runc call and ~20 ms to runc's part of runp and create.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HANDLERS = ("oci-systemd", "runc")
ROWS = (
    ("version", "crictl version (floor)"),
    ("runp", "runp"),
    ("create", "create"),
    ("start", "start"),
    ("pod_start", "pod start (runp+create+start)"),
    ("exec", "exec -s (ExecSync)"),
    ("stop", "stop (container)"),
    ("stopp", "stopp"),
    ("rmp", "rmp"),
)


def one_iteration(cri: Any, handler: str) -> dict[str, float]:
    """One pod's life through crictl; ms per step."""
    from test_cri import Pod  # tests/integration: the same pod and container configs

    out: dict[str, float] = {}

    def timed(key: str, *args: str) -> str:
        t0 = time.perf_counter()
        proc = cri.crictl(*args)
        out[key] = (time.perf_counter() - t0) * 1000
        if proc.returncode != 0:
            raise RuntimeError(f"{handler}: crictl {' '.join(args)}: {proc.stderr.strip()}")
        return str(proc.stdout).strip()

    pod = Pod(cri, handler)
    timed("version", "version")
    pod.id = timed("runp", "runp", "--runtime", handler, pod.config)
    try:
        doc = {"metadata": {"name": "c"}, "image": {"image": "localhost/busybox:oci-systemd-test"}}
        doc["command"] = ["sleep", "3600"]
        config = pod.write("c.json", {**doc, "log_path": "c.log"})
        cid = timed("create", "create", pod.id, config, pod.config)
        pod.containers.append(cid)
        timed("start", "start", cid)
        out["pod_start"] = out["runp"] + out["create"] + out["start"]
        timed("exec", "exec", "-s", cid, "true")
        timed("stop", "stop", "--timeout", "2", cid)
        timed("stopp", "stopp", pod.id)
        timed("rmp", "rmp", pod.id)
        pod.id = ""
    finally:
        if pod.id:
            cri.crictl("stopp", pod.id)
            cri.crictl("rmp", pod.id)
        cri.sb.run(["systemctl", "stop", pod.slice], capture_output=True)
    return out


def render(samples: dict[str, dict[str, list[float]]]) -> str:
    head = f"{'crictl operation (ms)':<32}" + "".join(f"{h + ' med':>18}{'p90':>8}" for h in HANDLERS)
    lines = [head + f"{'vs runc':>10}", "-" * (len(head) + 10)]
    for key, label in ROWS:
        row = f"{label:<32}"
        med = {}
        for h in HANDLERS:
            data = sorted(samples[h][key])
            med[h] = statistics.median(data)
            p90 = data[min(len(data) - 1, round(0.9 * (len(data) - 1)))]
            row += f"{med[h]:>18.1f}{p90:>8.1f}"
        lines.append(row + f"{med['oci-systemd'] / med['runc']:>9.2f}x")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/cri.py boots a private systemd: run it as root", file=sys.stderr)
        return 2
    sys.path[:0] = [os.fspath(REPO), os.fspath(REPO / "tests" / "integration")]
    import engines

    from oci_systemd.devtools import sandbox as sandboxes

    if not engines.shutil.which("crictl"):
        print("crictl not installed (scripts/setup builds it)", file=sys.stderr)
        return 2
    name = f"bench-cri-{os.getpid()}-{secrets.token_hex(3)}"

    def on_signal(signum: int, _frame: Any) -> None:
        with contextlib.suppress(Exception):
            sandboxes.down(name)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sb = sandboxes.up(name)
    try:
        cri = engines.CriContainerd(sb, "bench-cri")
        cri.start()
        cri.import_images(engines.Podman(sb))
        samples: dict[str, dict[str, list[float]]] = {h: {k: [] for k, _ in ROWS} for h in HANDLERS}
        for i in range(args.warmup + args.iterations):
            order = HANDLERS if i % 2 == 0 else tuple(reversed(HANDLERS))
            for handler in order:
                got = one_iteration(cri, handler)
                if i >= args.warmup:
                    for key, value in got.items():
                        samples[handler][key].append(value)
            print(f"iteration {i + 1}/{args.warmup + args.iterations}", file=sys.stderr, flush=True)
        print(render(samples))
        cri.stop()
    finally:
        sandboxes.down(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
