#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A container as a systemd service, side by side in one run, inside a private systemd:

- oci-systemd's unit mode (units/oci-container@.service: the container is the service),
- oci-systemd's scope placement (units/oci-scope@.service: `oci-systemd run` relays),
- podman in Quadlet's shape (`podman run -d --rm --replace --sdnotify=conmon --cgroups=split`,
  runc, conmon resident), as `podman-systemd.unit(5)` generates it.

    sudo .venv/bin/python benchmarks/services.py                # ~1 min on 2 cores
    sudo .venv/bin/python benchmarks/services.py --sandbox NAME --rounds 3

Per round and kind, interleaved: `systemctl start` until it returns (the unit is active),
the PSS of the unit's processes outside the container's cgroup (what stays resident for the
container: the relay, conmon; smaps_rollup), and `systemctl stop`. The timing loop runs
inside the sandbox (the copied INNER script), so nsenter's cost is never timed. The program
is `sh` that ends on SIGTERM, so stop measures the machinery, not a stop timeout.

Stdlib only (plus oci_systemd.devtools.sandbox and tests/integration/{bundles,engines}.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
INNER_DIR = "/tmp/oci-bench-services"
PROGRAM = ["sh", "-c", "trap 'exit 0' TERM; echo ready; while :; do sleep 1; done"]
KINDS = ("oci-container", "oci-scope", "quadlet")
LABELS = {
    "oci-container": "oci-systemd unit mode",
    "oci-scope": "oci-systemd scope",
    "quadlet": "podman (Quadlet shape, runc)",
}
# The container's own cgroup in each kind: everything else in the unit is overhead.
CONTAINER_CGROUPS = ("/container", "/libpod-payload-")

INNER = r"""
import json, os, statistics, subprocess, sys, time
plan = json.load(open(sys.argv[1]))

def pss_outside_container(unit):
    cg = subprocess.run(["systemctl", "show", "-p", "ControlGroup", "--value", unit],
                        capture_output=True, text=True).stdout.strip()
    total, procs = 0, []
    for dirpath, _dirs, files in os.walk("/sys/fs/cgroup" + cg):
        rel = dirpath[len("/sys/fs/cgroup" + cg):]
        if any(rel.startswith(p) for p in plan["container_cgroups"]) or "cgroup.procs" not in files:
            continue
        for pid in open(os.path.join(dirpath, "cgroup.procs")).read().split():
            try:
                for line in open(f"/proc/{pid}/smaps_rollup"):
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                procs.append(open(f"/proc/{pid}/comm").read().strip())
            except OSError:
                pass
    return total, procs

def timed(*argv):
    t0 = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.monotonic() - t0) * 1000

out = {k: {"start_ms": [], "stop_ms": [], "pss_kb": [], "resident": []} for k in plan["kinds"]}
for _round in range(plan["rounds"]):
    for name in plan["names"]:
        for kind in plan["kinds"]:
            unit = f"{kind}@{name}.service"
            out[kind]["start_ms"].append(timed("systemctl", "start", unit))
            time.sleep(0.3)  # let a relay or conmon settle before reading its memory
            pss, procs = pss_outside_container(unit)
            out[kind]["pss_kb"].append(pss)
            out[kind]["resident"] = sorted(set(out[kind]["resident"]) | set(procs))
            out[kind]["stop_ms"].append(timed("systemctl", "stop", unit))
            subprocess.run(["systemctl", "reset-failed", unit], stderr=subprocess.DEVNULL)
json.dump(out, open(plan["result"], "w"))
"""


def install(sb: Any, work: Path, runtime: str) -> None:
    """The three unit templates and one bundle per container name."""
    import bundles
    import engines

    containers = f"{INNER_DIR}/containers"
    unit_dir = sb.host_path("/run/systemd/system")
    for unit in ("oci-container@.service", "oci-scope@.service"):
        text = (REPO / "units" / unit).read_text().replace("/usr/bin/oci-systemd", runtime)
        text = text.replace(
            "Environment=OCI_CONTAINERS_DIR=%S/oci-containers",
            f"Environment=OCI_CONTAINERS_DIR={containers}",
        )
        (unit_dir / unit).write_text(text)
    podman = engines.Podman(sb)
    podman.import_busybox()
    (unit_dir / "quadlet@.service").write_text(quadlet_unit(podman.env, engines.IMAGE))
    sb.run(["systemctl", "daemon-reload"], check=True)
    rootfs = bundles.build_rootfs(work / "rootfs")
    for name in NAMES:
        conf = bundles.add_all_namespaces(bundles.base_config())
        conf["process"]["args"] = PROGRAM
        bundles.make_bundle(sb.host_path(f"{containers}/{name}"), conf, rootfs=rootfs)


def quadlet_unit(env: dict[str, str], image: str) -> str:
    """What quadlet generates for a .container file (podman 4.x), with runc and the test
    storage. The sandbox's podman runs in a private /var/lib (engines._PRIVATE_VAR_LIB)."""
    import engines

    wrap = (
        " ".join(engines._PRIVATE_VAR_LIB[:7])
        + " 'mount -t tmpfs -o mode=0755 tmpfs /var/lib && exec \"$@\"' sh"
    )
    program = " ".join(PROGRAM[:2]) + f' "{PROGRAM[2]}"'
    lines = [
        "[Service]",
        "Type=notify",
        "NotifyAccess=all",
        "Delegate=yes",
        "KillMode=mixed",
        "SyslogIdentifier=%N",
        *(f"Environment={k}={v}" for k, v in env.items()),
        "ExecStartPre=-/bin/rm -f %t/%N.cid",
        f"ExecStart={wrap} podman run --name %i --replace --rm --cgroups=split --sdnotify=conmon -d "
        f"--runtime /usr/sbin/runc --cidfile=%t/%N.cid {image} {program}",
        f"ExecStop={wrap} podman rm -f -i --cidfile=%t/%N.cid",
        f"ExecStopPost=-{wrap} podman rm -f -i --cidfile=%t/%N.cid",
        "ExecStopPost=-/bin/rm -f %t/%N.cid",
        "TimeoutStopSec=10",
        "",
    ]
    return "\n".join(lines)


NAMES = ("b1", "b2", "b3")


def render(results: dict[str, Any]) -> str:
    import statistics

    rows = [
        "| | `systemctl start` median (min) | resident non-container PSS, median "
        "| `systemctl stop` median (min) | resident |",
        "|---|---|---|---|---|",
    ]
    for kind in KINDS:
        r = results[kind]
        rows.append(
            f"| {LABELS[kind]} | {statistics.median(r['start_ms']):.0f} ms ({min(r['start_ms']):.0f}) "
            f"| {statistics.median(r['pss_kb']):,.0f} kB | {statistics.median(r['stop_ms']):.0f} ms "
            f"({min(r['stop_ms']):.0f}) | {', '.join(r['resident']) or 'nothing'} |"
        )
    podman_start = statistics.median(results["quadlet"]["start_ms"])
    unit_start = statistics.median(results["oci-container"]["start_ms"])
    rows.append("")
    rows.append(
        f"unit mode start / podman start: {unit_start / podman_start:.2f}x"
        f" (n={len(results['quadlet']['start_ms'])} each)"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=4, help="rounds of the 3 containers per kind (default 4)")
    p.add_argument("--sandbox", help="use this running sandbox instead of booting (and stopping) one")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    sys.path.insert(0, os.fspath(REPO))
    sys.path.insert(0, os.fspath(REPO / "tests" / "integration"))
    from oci_systemd.devtools import sandbox as sandboxes
    from oci_systemd.errors import SandboxError

    if os.geteuid() != 0:
        print("benchmarks/services.py boots a private systemd: run it as root", file=sys.stderr)
        return 2
    name = args.sandbox or f"bench-svc-{os.getpid()}-{secrets.token_hex(3)}"
    sb = sandboxes.get(name) if args.sandbox else sandboxes.up(name)
    try:
        work = sb.host_path(INNER_DIR)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        install(sb, work, os.fspath(Path(sys.executable).with_name("oci-systemd")))
        (work / "inner.py").write_text(INNER)
        plan = {
            "kinds": list(KINDS),
            "names": list(NAMES),
            "rounds": args.rounds,
            "container_cgroups": list(CONTAINER_CGROUPS),
            "result": f"{INNER_DIR}/result.json",
        }
        (work / "plan.json").write_text(json.dumps(plan))
        t0 = time.monotonic()
        sb.run([sys.executable, "-s", f"{INNER_DIR}/inner.py", f"{INNER_DIR}/plan.json"], check=True)
        results = json.loads((work / "result.json").read_text())
    finally:
        if not args.sandbox:
            with contextlib.suppress(SandboxError):
                sandboxes.down(name)
    print(render(results))
    print(f"(whole timed loop {time.monotonic() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
