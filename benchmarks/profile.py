#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Where oci-systemd's time goes: start-up, imports, per-phase timers, pyinstrument.

    sudo .venv/bin/python benchmarks/profile.py [--sandbox NAME] [--runs N] [--pyinstrument-path DIR]

Boots its own sandbox (or uses NAME), builds the same bundle as benchmarks/run.py and, inside
the sandbox, measures:

1. interpreter start-up with different flags, and the entry point's own start-up (`--version`);
2. `python -X importtime` of `state` and `create` (minimum over --runs runs per module);
3. per-phase wall clock of create/start/state/kill/delete (benchmarks/phases.py wraps the steps);
4. pyinstrument profiles of create and start, when pyinstrument is importable
   (`--pyinstrument-path` adds a directory, e.g. one made with `pip install --target DIR pyinstrument`).

Prints a plain-text report (the source of docs/performance.md's profile sections).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
INNER_DIR = "/tmp/oci-bench-profile"


def _pyenv_python() -> str:
    """A pyenv interpreter for comparison (the venv runs on Debian's python3), else ours."""
    import glob

    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11*/bin/python3")))
    return found[-1] if found else os.path.realpath(sys.executable)


# -- inner -----------------------------------------------------------------------------------


def _timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t = time.perf_counter_ns()
    subprocess.run(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    return (time.perf_counter_ns() - t) / 1e6


def _median_ms(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    _timed(argv, env)
    return statistics.median(_timed(argv, env) for _ in range(runs))


def _bundle(workdir: str, config: dict[str, Any], cid: str, args: list[str]) -> str:
    conf = json.loads(json.dumps(config))
    conf["linux"]["cgroupsPath"] = f"system.slice:bench:{cid}"
    conf["process"]["args"] = args
    path = os.path.join(workdir, "bundles", cid)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(conf, f)
    return path


def _importtime(argv: list[str], runs: int) -> dict[str, tuple[int, int, int]]:
    """module -> (min self us, min cumulative us, depth) over `runs` runs of `python -X importtime`."""
    best: dict[str, tuple[int, int, int]] = {}
    for _ in range(runs):
        # A file, not a pipe: `create` leaves a container holding its stderr open.
        with tempfile.TemporaryFile("w+") as err:
            subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            err.seek(0)
            text = err.read()
        for line in text.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            head, cum, name = line.split("|", 2)
            self_us = head.split(":")[1].strip()
            depth = (len(name) - len(name.lstrip())) // 2
            mod = name.strip()
            s, c = int(self_us), int(cum.strip())
            old = best.get(mod)
            best[mod] = (min(s, old[0]), min(c, old[1]), depth) if old else (s, c, depth)
    return best


def _print_importtime(title: str, data: dict[str, tuple[int, int, int]], top: int = 22) -> None:
    print(f"\n### importtime: {title} (min over runs; ms)")
    print(f"{'module':<48}{'self':>8}{'cumulative':>12}")
    rows = sorted(data.items(), key=lambda kv: -kv[1][1])
    shown = 0
    for mod, (s, c, depth) in rows:
        if depth > 2:
            continue
        print(f"{'  ' * depth + mod:<48}{s / 1000:>8.1f}{c / 1000:>12.1f}")
        shown += 1
        if shown >= top:
            break
    total_self = sum(s for s, _c, _d in data.values()) / 1000
    print(f"(sum of self times, all {len(data)} modules: {total_self:.1f} ms)")


def inner(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    runs = plan["runs"]
    oci = plan["oci"]
    python = plan["python"]
    workdir = plan["workdir"]
    root = "/run/oci-bench-profile"
    os.makedirs(root, exist_ok=True)
    base = [*oci, "--systemd-cgroup", "--root", root]
    venv_site = plan["venv_site"]
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

    def call(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        # Never a pipe: a created container inherits create's stdio and would hold it open.
        return subprocess.run(
            [*base, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            check=check,
        )

    # A created container for state.
    idle = f"prof-{secrets.token_hex(3)}"
    call("create", "--bundle", _bundle(workdir, plan["config"], idle, ["/bin/sleep", "3600"]), idle)
    try:
        print("## 1. start-up (median wall ms of", runs, "runs)")
        # What pip's console script would cost (site first), next to the -IS launcher we ship.
        console_script = (
            f"import sys; sys.path[:0] = [{plan['repo']!r}, {venv_site!r}]; "
            "from oci_systemd.cli.entry import main; main()"
        )
        rows = [
            ("python -I -S -c pass  (the interpreter's floor)", [python, "-I", "-S", "-c", "pass"]),
            ("python -S -c pass", [python, "-S", "-c", "pass"]),
            ("python -I -c pass  (venv site)", [python, "-I", "-c", "pass"]),
            ("python -c pass", [python, "-c", "pass"]),
            ("pyenv python3 -c pass (certifi .pth)", [plan["pyenv_python"], "-c", "pass"]),
            ("pyenv python3 -I -S -c pass", [plan["pyenv_python"], "-I", "-S", "-c", "pass"]),
            ("oci-systemd --version (the -IS launcher)", [*oci, "--version"]),
            ("oci-systemd state (the -IS launcher)", [*base, "state", idle]),
            (
                "python -c <console script> state (with site)",
                [python, "-c", console_script, "--systemd-cgroup", "--root", root, "state", idle],
            ),
        ]
        for label, argv in rows:
            print(f"{label:<52}{_median_ms(argv, runs, env):>8.1f}")

        it = [python, "-I", "-S", "-X", "importtime", *plan["entry_script"]]  # as the launcher runs
        _print_importtime(
            "oci-systemd state", _importtime([*it, "--systemd-cgroup", "--root", root, "state", idle], runs)
        )
        data: dict[str, tuple[int, int, int]] = {}
        for i in range(runs):
            cid = f"prof-it-{i}-{secrets.token_hex(2)}"
            b = _bundle(workdir, plan["config"], cid, ["/bin/true"])
            got = _importtime([*it, "--systemd-cgroup", "--root", root, "create", "--bundle", b, cid], 1)
            for mod, (s, c, d) in got.items():
                old = data.get(mod)
                data[mod] = (min(s, old[0]), min(c, old[1]), d) if old else (s, c, d)
            call("delete", "-f", cid, check=False)
        _print_importtime("oci-systemd create", data)

        print(f"\n## 3. phases (median ms of {runs} runs; phase times exclude imports)")
        phases_py = plan["phases_py"]
        per_cmd: dict[str, dict[str, list[float]]] = {}
        extra: dict[str, dict[str, list[float]]] = {}
        for i in range(runs):
            cid = f"prof-ph-{i}-{secrets.token_hex(2)}"
            b = _bundle(workdir, plan["config"], cid, ["/bin/sleep", "3600"])
            cmds = [
                ("create", ["create", "--bundle", b, "--pid-file", f"{b}/pid", cid]),
                ("start", ["start", cid]),
                ("state", ["state", cid]),
                ("kill", ["kill", cid, "KILL"]),
                ("delete", ["delete", cid]),
            ]
            for name, args in cmds:
                out = f"{workdir}/phases-{name}.json"
                t = time.perf_counter_ns()
                subprocess.run(
                    [python, "-s", phases_py, out, "--", "--systemd-cgroup", "--root", root, *args],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    env=env,
                    check=True,
                )
                wall = (time.perf_counter_ns() - t) / 1e6
                got = json.loads(Path(out).read_text())
                rec = per_cmd.setdefault(name, {})
                for ph, vals in got["phases"].items():
                    for j, v in enumerate(vals):
                        rec.setdefault(f"{ph}#{j + 1}" if len(vals) > 1 else ph, []).append(v)
                ex = extra.setdefault(name, {})
                ex.setdefault("wall (outside)", []).append(wall)
                ex.setdefault("in-process total", []).append(got["total_ms"])
                ex.setdefault("imports", []).append(got["imports_ms"])
                if name == "kill":
                    # wait until the killed init is gone, so delete sees it stopped
                    pid = int(Path(f"{b}/pid").read_text())
                    for _ in range(2000):
                        if not os.path.exists(f"/proc/{pid}"):
                            break
                        time.sleep(0.001)
            shutil.rmtree(b, ignore_errors=True)
        for name in per_cmd:
            ex = extra[name]
            wall = statistics.median(ex["wall (outside)"])
            total = statistics.median(ex["in-process total"])
            print(
                f"\n{name}: wall {wall:.1f} ms; interpreter start-up+site ~{wall - total:.1f}; "
                f"imports {statistics.median(ex['imports']):.1f}; in-process total {total:.1f}"
            )
            for ph, vals in sorted(per_cmd[name].items(), key=lambda kv: -statistics.median(kv[1])):
                print(f"  {ph:<44}{statistics.median(vals):>8.2f}")

        if plan.get("pyinstrument_path"):
            print("\n## 4. pyinstrument")
            envp = {**env, "PYTHONPATH": plan["pyinstrument_path"]}
            for name in ("create", "start"):
                cid = f"prof-pi-{secrets.token_hex(2)}"
                b = _bundle(workdir, plan["config"], cid, ["/bin/sleep", "3600"])
                if name == "start":
                    call("create", "--bundle", b, cid)
                args = ["create", "--bundle", b, cid] if name == "create" else ["start", cid]
                report = f"{workdir}/pyinstrument-{name}.txt"
                proc = subprocess.run(
                    [
                        python,
                        "-m",
                        "pyinstrument",
                        "-o",
                        report,
                        "-i",
                        "0.0002",
                        "--show-all",
                        "-r",
                        "text",
                        *plan["entry_script"],
                        "--systemd-cgroup",
                        "--root",
                        root,
                        *args,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=envp,
                )
                print(f"\n### pyinstrument: {name} (exit {proc.returncode})\n")
                text = Path(report).read_text() if os.path.exists(report) else ""
                lines = [ln for ln in text.splitlines() if ln.strip()]
                print("\n".join(lines[:70]))
                call("delete", "-f", cid, check=False)
    finally:
        call("delete", "-f", idle, check=False)
        for cid in os.listdir(root) if os.path.isdir(root) else []:
            call("delete", "-f", cid, check=False)
    return 0


# -- outer -----------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sandbox", help="use this running sandbox instead of booting one")
    p.add_argument("--runs", type=int, default=9)
    p.add_argument("--oci-systemd", help="the oci-systemd command (default: this venv's entry point)")
    p.add_argument("--pyinstrument-path", help="directory holding pyinstrument (pip install --target)")
    p.add_argument("--inner", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        return inner(args.inner)
    sys.path.insert(0, os.fspath(REPO))
    sys.path.insert(0, os.fspath(HERE))
    sys.path.insert(0, os.fspath(REPO / "tests" / "integration"))
    import bundles
    import run as bench

    from oci_systemd.devtools import sandbox as sandboxes
    from oci_systemd.errors import SandboxError

    own = args.sandbox is None
    name = args.sandbox or f"bench-prof-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        sb, work = bench.sandbox_with_rootfs(name, own=own, inner_dir=INNER_DIR)
        entry = os.fspath(Path(sys.executable).with_name("oci-systemd"))
        import sysconfig

        plan = {
            "runs": args.runs,
            "workdir": INNER_DIR,
            "config": bench.bench_config(bundles.base_config(), f"{INNER_DIR}/rootfs"),
            "oci": args.oci_systemd.split() if args.oci_systemd else [entry],
            "entry_script": [entry],
            "python": sys.executable,
            "pyenv_python": _pyenv_python(),
            "repo": os.fspath(REPO),
            "venv_site": sysconfig.get_paths()["purelib"],
            "phases_py": f"{INNER_DIR}/phases.py",
            "pyinstrument_path": args.pyinstrument_path,
        }
        shutil.copy(HERE / "phases.py", work / "phases.py")
        shutil.copy(Path(__file__).resolve(), work / "profile.py")
        (work / "plan.json").write_text(json.dumps(plan))
        proc = sb.run(
            [sys.executable, "-s", f"{INNER_DIR}/profile.py", "--inner", f"{INNER_DIR}/plan.json"],
            check=False,
        )
        return proc.returncode
    finally:
        if own:
            with contextlib.suppress(SandboxError):
                sandboxes.down(name)


if __name__ == "__main__":
    sys.exit(main())
