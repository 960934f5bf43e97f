#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""oci-systemd vs runc vs crun, interleaved, on one busybox bundle, inside a private systemd.

    sudo .venv/bin/python benchmarks/run.py            # full run (~2-4 min on 2 cores)
    sudo .venv/bin/python benchmarks/run.py --quick    # smoke run (a few seconds)

The outer process (this file, on the host) boots its own sandbox (`oci_systemd.devtools.sandbox.up`),
builds one busybox rootfs in the sandbox's private /tmp, writes a plan, and runs this same file
with `--inner PLAN` inside the sandbox (`sandbox exec`), so that nsenter's cost is never
timed. The inner process is a child subreaper, like conmon or a containerd shim: a detached
container's init is re-parented to it and `wait` is a plain waitpid().

Every runtime gets `--systemd-cgroup` and its own `--root`; every container gets a unique id and
`linux.cgroupsPath = system.slice:bench:<id>`; otherwise all containers use the same config
(ociVersion 1.0.2, no rlimits, no device rules: what crun 1.8 accepts here) and the same
read-only rootfs. Results: a table on stdout and benchmarks/results/<timestamp>.json.

Stdlib only (plus oci_systemd.devtools.sandbox and tests/integration/bundles.py on the outer side).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import os
import platform
import queue
import secrets
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"
INNER_DIR = "/tmp/oci-bench"  # inside the sandbox: its private tmpfs

OPS = ("create", "start", "state", "exec", "kill", "delete", "run", "cycle")
OP_LABELS = {
    "create": "create",
    "start": "start",
    "state": "state",
    "exec": "exec --detach /bin/true",
    "kill": "kill",
    "delete": "delete",
    "run": "run /bin/true",
    "cycle": "create+start+wait+delete",
}
PEERS = ("runc", "crun")
SUBJECT = "oci-systemd"
# --baseline CMD: another build of oci-systemd, timed interleaved with SUBJECT (an A/B in one run).
BASELINE = "baseline"

FULL = {"iterations": 40, "warmup": 3, "memory": 20, "throughput": 50, "parallel": 2}
QUICK = {"iterations": 3, "warmup": 1, "memory": 3, "throughput": 6, "parallel": 2}

PR_SET_CHILD_SUBREAPER = 36


# =============================================================================================
# Inner side: runs inside the sandbox, times the runtimes.


class OpFailed(Exception):
    pass


class Runner:
    """One runtime: its argv prefix, its --root, and timed calls."""

    def __init__(self, name: str, argv: list[str], root: str, workdir: str, env: dict[str, str]) -> None:
        self.name = name
        self.argv = [*argv, "--systemd-cgroup", "--root", root]
        self.workdir = workdir
        self.env = env
        self.err_path = os.path.join(workdir, f"{name}.stderr")
        # Containers inherit stderr from create: a file, never a pipe we would wait on.
        self.err = open(self.err_path, "ab", buffering=0)  # noqa: SIM115
        self.live: set[str] = set()

    def call(self, *args: str, capture: bool = False, timeout: float = 60) -> tuple[float, str]:
        """Run one command; returns (milliseconds, stdout). Raises OpFailed on a non-zero exit."""
        before = os.fstat(self.err.fileno()).st_size
        # No `timeout=` for subprocess: without pipes, Popen.wait(timeout) polls waitpid with
        # doubling sleeps (0.5 ms .. 50 ms) and rounds every time up to 8, 16, 32, 64, 114, 164 ms.
        # A watchdog thread kills a stuck command instead; wait() is then a blocking waitpid.
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(
            [*self.argv, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=self.err,
            env=self.env,
        )
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            stdout = proc.stdout.read() if proc.stdout else b""
            proc.wait()
        finally:
            watchdog.cancel()
            if proc.stdout:
                proc.stdout.close()
        ms = (time.perf_counter_ns() - t0) / 1e6
        if proc.returncode != 0:
            with open(self.err_path, "rb") as f:
                f.seek(before)
                tail = f.read().decode(errors="replace").strip()
            raise OpFailed(f"{self.name} {' '.join(args)}: exit {proc.returncode}: {tail[-800:]}")
        return ms, stdout.decode()

    def bundle(self, cid: str, template: dict[str, Any], args: list[str]) -> str:
        """A bundle directory for this id: the shared config with its own cgroupsPath and args."""
        conf = copy.deepcopy(template)
        conf["linux"]["cgroupsPath"] = f"system.slice:bench:{cid}"
        conf["process"]["args"] = list(args)
        path = os.path.join(self.workdir, "bundles", cid)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(conf, f)
        return path

    def create(self, cid: str, bundle: str) -> tuple[float, int]:
        pid_file = os.path.join(bundle, "pid")
        self.live.add(cid)
        ms, _ = self.call("create", "--bundle", bundle, "--pid-file", pid_file, cid)
        with open(pid_file) as f:
            return ms, int(f.read().strip())

    def delete(self, cid: str, *, force: bool = False) -> float:
        ms, _ = self.call("delete", *(["--force"] if force else []), cid)
        self.live.discard(cid)
        shutil.rmtree(os.path.join(self.workdir, "bundles", cid), ignore_errors=True)
        return ms

    def cleanup(self) -> None:
        for cid in list(self.live):
            with contextlib.suppress(Exception):
                self.delete(cid, force=True)
        reap_strays()


def new_id(runtime: str, tag: str) -> str:
    short = {"oci-systemd": "os", "runc": "rc", "crun": "cr"}.get(runtime, runtime[:2])
    return f"b-{short}-{tag}-{secrets.token_hex(4)}"


def wait_exit(pid: int, timeout: float = 30.0) -> None:
    """Wait until `pid` has exited and is reaped. As subreaper it is normally our child."""
    try:
        os.waitpid(pid, 0)
        return
    except ChildProcessError:
        pass
    # Not our child (a runtime kept it, or it is already gone): pidfd, then until reaped.
    deadline = time.monotonic() + timeout
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        reap_strays()
        time.sleep(0.001)


def reap_strays() -> None:
    """Reap whatever exited and was re-parented to us; only when no subprocess is running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def percentile(data: list[float], q: float) -> float:
    if len(data) == 1:
        return data[0]
    return statistics.quantiles(data, n=100, method="inclusive")[int(q) - 1]


def summarize(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    return {
        "n": len(samples),
        "median": statistics.median(samples),
        "p90": percentile(samples, 90),
        "min": min(samples),
        "max": max(samples),
        "mean": statistics.fmean(samples),
    }


def one_iteration(r: Runner, sleeper: dict[str, Any], trueconf: dict[str, Any]) -> dict[str, float]:
    """The per-iteration measurements of one runtime: three containers, every op timed."""
    out: dict[str, float] = {}
    # 1. single operations on a long-running container: create start state kill (wait) delete.
    cid = new_id(r.name, "op")
    bundle = r.bundle(cid, sleeper, ["/bin/sleep", "3600"])
    out["create"], pid = r.create(cid, bundle)
    out["start"], _ = r.call("start", cid)
    out["state"], text = r.call("state", cid, capture=True)
    status = json.loads(text).get("status")
    if status != "running":
        raise OpFailed(f"{r.name} state {cid}: status {status!r}, expected 'running'")
    # exec as containerd's shim sends it for every ExecSync (probes): a process file, detached,
    # a pid file; the exec'd /bin/true is re-parented to us (a subreaper) and reaped.
    process = dict(sleeper["process"], args=["/bin/true"])
    with open(os.path.join(bundle, "exec.json"), "w") as f:
        json.dump(process, f)
    exec_pid = os.path.join(bundle, "exec.pid")
    out["exec"], _ = r.call(
        "exec", "--process", os.path.join(bundle, "exec.json"), "--detach", "--pid-file", exec_pid, cid
    )
    with open(exec_pid) as f:
        wait_exit(int(f.read().strip()))
    out["kill"], _ = r.call("kill", cid, "KILL")
    wait_exit(pid)
    out["delete"] = r.delete(cid)
    # 2. the full cycle of a short-lived container, wait included.
    cid = new_id(r.name, "cy")
    bundle = r.bundle(cid, trueconf, ["/bin/true"])
    t0 = time.perf_counter_ns()
    _, pid = r.create(cid, bundle)
    r.call("start", cid)
    wait_exit(pid)
    r.delete(cid)
    out["cycle"] = (time.perf_counter_ns() - t0) / 1e6
    # 3. `run` in the foreground: create, start, wait, delete in one command.
    cid = new_id(r.name, "rn")
    bundle = r.bundle(cid, trueconf, ["/bin/true"])
    r.live.add(cid)
    out["run"], _ = r.call("run", "--bundle", bundle, cid)
    r.live.discard(cid)
    shutil.rmtree(bundle, ignore_errors=True)
    reap_strays()
    return out


def smaps(pid: int) -> dict[str, int]:
    """kB figures from /proc/<pid>/smaps_rollup."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def scope_pids(cid: str) -> list[int]:
    """Every pid in the container's scope (with oci-systemd's leaf cgroup), from cgroup2."""
    top = f"/sys/fs/cgroup/system.slice/bench-{cid}.scope"
    pids: list[int] = []
    for dirpath, _dirs, files in os.walk(top):
        if "cgroup.procs" in files:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids += [int(x) for x in f.read().split()]
    return sorted(pids)


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:80]
    except OSError:
        return "?"


def memory_phase(r: Runner, sleeper: dict[str, Any], count: int) -> dict[str, Any]:
    """`count` containers created at once (not started): memory of the waiting processes."""
    ids = []
    pids = []
    try:
        for _ in range(count):
            cid = new_id(r.name, "mem")
            _, pid = r.create(cid, r.bundle(cid, sleeper, ["/bin/sleep", "3600"]))
            ids.append(cid)
            pids.append(pid)
        time.sleep(0.2)  # let lazily-touched pages settle
        waiting = [smaps(pid) for pid in pids]
        scope_totals = []
        scope_procs = []
        for cid in ids:
            members = scope_pids(cid)
            rows = [smaps(p) for p in members]
            scope_totals.append({k: sum(row.get(k, 0) for row in rows) for k in ("Pss", "Anonymous", "Rss")})
            scope_procs.append(len(members))

        def med(rows: list[dict[str, int]], key: str) -> float:
            return statistics.median(row.get(key, 0) for row in rows)

        return {
            "containers": count,
            "waiting_process": comm(pids[0]),
            "pss_kb": med(waiting, "Pss"),
            "pss_anon_kb": med(waiting, "Pss_Anon"),
            "anon_kb": med(waiting, "Anonymous"),
            "rss_kb": med(waiting, "Rss"),
            "scope_processes": statistics.median(scope_procs),
            "scope_pss_kb": med(scope_totals, "Pss"),
            "scope_anon_kb": med(scope_totals, "Anonymous"),
            "total_pss_kb": sum(row.get("Pss", 0) for row in waiting),
        }
    finally:
        for cid in ids:
            with contextlib.suppress(Exception):
                r.delete(cid, force=True)
        reap_strays()


def throughput_phase(r: Runner, trueconf: dict[str, Any], count: int, parallel: int) -> dict[str, Any]:
    """`count` containers created+started+deleted by `parallel` workers: containers per second."""
    jobs: queue.Queue[str] = queue.Queue()
    bundles = {}
    for _ in range(count):
        cid = new_id(r.name, "tp")
        bundles[cid] = r.bundle(cid, trueconf, ["/bin/true"])
        jobs.put(cid)
    errors: list[str] = []

    def worker() -> None:
        while True:
            try:
                cid = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                _, pid = r.create(cid, bundles[cid])
                r.call("start", cid)
                wait_exit(pid)
                r.delete(cid)
            except Exception as exc:
                errors.append(str(exc))

    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    r.cleanup()
    done = count - len(errors)
    return {
        "containers": count,
        "parallel": parallel,
        "seconds": elapsed,
        "per_second": done / elapsed if elapsed else 0.0,
        "errors": errors[:5],
        "failed": len(errors),
    }


def preflight(r: Runner, trueconf: dict[str, Any]) -> str | None:
    """None if the runtime can create, start, wait and delete the bench bundle here; else why not."""
    binary = r.argv[0]
    if not (os.path.isabs(binary) and os.access(binary, os.X_OK)) and not shutil.which(binary):
        return f"{binary} is not installed"
    cid = new_id(r.name, "pf")
    try:
        _, pid = r.create(cid, r.bundle(cid, trueconf, ["/bin/true"]))
        r.call("start", cid)
        wait_exit(pid)
        r.delete(cid)
    except (OpFailed, OSError, subprocess.TimeoutExpired) as exc:
        r.cleanup()
        return str(exc)
    return None


def version(argv: list[str], env: dict[str, str]) -> str:
    try:
        out = subprocess.run([*argv, "--version"], capture_output=True, text=True, env=env, timeout=20)
    except OSError as exc:
        return f"unavailable: {exc}"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else out.stderr.strip()[:200]


def inner(plan_path: str) -> int:
    with open(plan_path) as f:
        plan = json.load(f)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("warning: cannot become a child subreaper; wait falls back to polling", file=sys.stderr)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    workdir = plan["workdir"]
    sleeper = plan["config"]
    trueconf = plan["config"]
    runners: list[Runner] = []
    skipped: dict[str, str] = {}
    versions: dict[str, str] = {}
    say = plan.get("verbose", True)

    def log(msg: str) -> None:
        if say:
            print(msg, file=sys.stderr, flush=True)

    for spec in plan["runtimes"]:
        root = f"/run/oci-bench/{spec['name']}"
        os.makedirs(root, exist_ok=True)
        r = Runner(spec["name"], spec["argv"], root, workdir, env)
        versions[r.name] = version(spec["argv"], env)
        reason = preflight(r, trueconf)
        if reason:
            log(f"skipping {r.name}: {reason}")
            skipped[r.name] = reason
            continue
        runners.append(r)
    results: dict[str, Any] = {
        "versions": versions,
        "skipped": skipped,
        "runtimes": [r.name for r in runners],
        "ops": {},
        "memory": {},
        "throughput": {},
        "failures": {},
    }
    samples: dict[str, dict[str, list[float]]] = {r.name: {op: [] for op in OPS} for r in runners}
    failures: dict[str, list[str]] = {r.name: [] for r in runners}
    try:
        total = plan["warmup"] + plan["iterations"]
        t_start = time.monotonic()
        for i in range(total):
            # Round-robin, rotating who goes first so no runtime always follows the same one.
            order = runners[i % len(runners) :] + runners[: i % len(runners)] if runners else []
            for r in order:
                try:
                    got = one_iteration(r, sleeper, trueconf)
                except (OpFailed, subprocess.TimeoutExpired, OSError, ValueError) as exc:
                    failures[r.name].append(str(exc)[:600])
                    log(f"  {r.name}: iteration {i} failed: {str(exc)[:300]}")
                    r.cleanup()
                    continue
                if i >= plan["warmup"]:
                    for op, ms in got.items():
                        samples[r.name][op].append(ms)
            if (i + 1) % 5 == 0 or i + 1 == total:
                log(f"  iteration {i + 1}/{total} ({time.monotonic() - t_start:.0f}s)")
        for r in runners:
            log(f"memory: {plan['memory']} {r.name} containers created at once")
            try:
                results["memory"][r.name] = memory_phase(r, sleeper, plan["memory"])
            except (OpFailed, OSError, subprocess.TimeoutExpired) as exc:
                failures[r.name].append(f"memory: {exc}"[:600])
        # Throughput: one runtime at a time (they would compete for the 2 cores), order rotated.
        for r in runners:
            log(f"throughput: {plan['throughput']} {r.name} containers, {plan['parallel']} in parallel")
            results["throughput"][r.name] = throughput_phase(
                r, trueconf, plan["throughput"], plan["parallel"]
            )
    finally:
        for r in runners:
            r.cleanup()
    results["ops"] = {name: {op: summarize(v) for op, v in ops.items()} for name, ops in samples.items()}
    results["samples_ms"] = samples
    results["failures"] = failures
    with open(plan["result_path"], "w") as f:
        json.dump(results, f, indent=1)
    return 0


# =============================================================================================
# Outer side: sandbox, bundle, plan, table, JSON.


def sandbox_with_rootfs(name: str, *, own: bool, inner_dir: str) -> tuple[Any, Path]:
    """Boot the sandbox `name` (own) or use the running one, and lay a fresh busybox rootfs in
    `inner_dir` (a path inside it); returns (sandbox, host path of inner_dir)."""
    import bundles

    from oci_systemd.devtools import sandbox as sandboxes

    sb = sandboxes.up(name) if own else sandboxes.get(name)
    work = sb.host_path(inner_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bundles.build_rootfs(work / "rootfs")
    return sb, work


def bench_config(base: dict[str, Any], rootfs: str) -> dict[str, Any]:
    """The one config all three runtimes get (cgroupsPath and args are set per container)."""
    conf = copy.deepcopy(base)
    # crun 1.8.1 rejects ociVersion 1.2.0; 1.0.2 is what runc 1.1 writes.
    conf["ociVersion"] = "1.0.2"
    conf["root"] = {"path": rootfs, "readonly": True}
    conf["hostname"] = "bench"
    # crun's RLIMIT_MEMLOCK trouble here: no rlimits, no device rules (an empty resources).
    conf["process"].pop("rlimits", None)
    conf["process"]["terminal"] = False
    linux = conf.setdefault("linux", {})
    linux["resources"] = {}
    linux.pop("devices", None)
    linux.pop("seccomp", None)
    return conf


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def render(results: dict[str, Any]) -> str:
    names = [n for n in (SUBJECT, BASELINE, *PEERS) if n in results["runtimes"]]
    versus = [n for n in (BASELINE, *PEERS) if n in names or n in PEERS]
    lines = []
    head = f"{'operation (ms)':<26}"
    for n in names:
        head += f"{n + ' med':>16}{'p90':>8}"
    head += "".join(f"{'vs ' + ('base' if n == BASELINE else n):>10}" for n in versus)
    lines.append(head)
    lines.append("-" * len(head))
    for op in OPS:
        row = f"{OP_LABELS[op]:<26}"
        med = {}
        for n in names:
            s = results["ops"][n][op]
            med[n] = s.get("median")
            row += f"{fmt_ms(s.get('median')):>16}{fmt_ms(s.get('p90')):>8}"
        row += "".join(f"{ratio(med.get(SUBJECT), med.get(n)):>10}" for n in versus)
        lines.append(row)
    lines.append("")
    mem = results.get("memory", {})
    if mem:
        count = next(iter(mem.values()))["containers"]
        lines.append(f"memory of a created container ({count} created at once; medians, kB)")
        lines.append(
            f"{'runtime':<13}{'PSS':>8}{'Pss_Anon':>10}{'Anon':>8}{'RSS':>8}"
            f"{'scope procs':>13}{'scope PSS':>11}  waiting process"
        )
        for n in names:
            m = mem.get(n)
            if not m:
                continue
            lines.append(
                f"{n:<13}{m['pss_kb']:>8.0f}{m['pss_anon_kb']:>10.0f}{m['anon_kb']:>8.0f}{m['rss_kb']:>8.0f}"
                f"{m['scope_processes']:>13.0f}{m['scope_pss_kb']:>11.0f}  {m['waiting_process']}"
            )
        if SUBJECT in mem:
            for peer in (BASELINE, *PEERS):
                if peer in mem:
                    lines.append(
                        f"  {SUBJECT} PSS / {peer}: {mem[SUBJECT]['pss_kb'] / mem[peer]['pss_kb']:.2f}x, "
                        f"anon / {peer}: {mem[SUBJECT]['anon_kb'] / max(mem[peer]['anon_kb'], 1):.2f}x"
                    )
        lines.append("")
    tp = results.get("throughput", {})
    if tp:
        first = next(iter(tp.values()))
        lines.append(
            f"throughput ({first['containers']} containers created+started+waited+deleted, "
            f"{first['parallel']} in parallel)"
        )
        for n in names:
            t = tp.get(n)
            if t:
                failed = f"  ({t['failed']} failed)" if t["failed"] else ""
                lines.append(f"{n:<13}{t['per_second']:>8.1f} containers/s  ({t['seconds']:.1f} s){failed}")
        if SUBJECT in tp:
            for peer in (BASELINE, *PEERS):
                if peer in tp and tp[peer]["per_second"]:
                    lines.append(
                        f"  {SUBJECT} / {peer}: {tp[SUBJECT]['per_second'] / tp[peer]['per_second']:.2f}x"
                    )
        lines.append("")
    for n, why in results.get("skipped", {}).items():
        lines.append(f"skipped {n}: {why}")
    for n, fails in results.get("failures", {}).items():
        if fails:
            lines.append(f"{n}: {len(fails)} failed iteration(s); first: {fails[0][:300]}")
    return "\n".join(lines).rstrip() + "\n"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    try:
        info["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", os.fspath(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", os.fspath(REPO), "status", "--porcelain", "--", "oci_systemd"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        info["dirty"] = bool(dirty)
    except OSError:
        pass
    return info


def outer(args: argparse.Namespace) -> int:
    sys.path.insert(0, os.fspath(REPO))
    sys.path.insert(0, os.fspath(REPO / "tests" / "integration"))
    import bundles  # tests/integration/bundles.py: build_rootfs(), base_config()

    from oci_systemd.devtools import sandbox as sandboxes
    from oci_systemd.errors import SandboxError

    if os.geteuid() != 0:
        print("benchmarks/run.py boots a private systemd: run it as root", file=sys.stderr)
        return 2
    preset = dict(QUICK if args.quick else FULL)
    for key in preset:
        if getattr(args, key, None) is not None:
            preset[key] = getattr(args, key)
    oci = (
        shlex.split(args.oci_systemd)
        if args.oci_systemd
        else [os.fspath(Path(sys.executable).with_name("oci-systemd"))]
    )
    all_runtimes = {
        SUBJECT: oci,
        "runc": [shutil.which("runc") or "/usr/sbin/runc"],
        "crun": [shutil.which("crun") or "/usr/bin/crun"],
    }
    chosen = args.runtimes.split(",") if args.runtimes else list(all_runtimes)
    if args.baseline:
        all_runtimes[BASELINE] = shlex.split(args.baseline)
        chosen = [n for n in chosen if n != BASELINE]
        chosen.insert(chosen.index(SUBJECT) + 1 if SUBJECT in chosen else 0, BASELINE)
    own_sandbox = args.sandbox is None
    name = args.sandbox or f"bench-{os.getpid()}-{secrets.token_hex(3)}"

    def down(*_: Any) -> None:
        if own_sandbox:
            with contextlib.suppress(SandboxError):
                sandboxes.down(name)

    def on_signal(signum: int, _frame: Any) -> None:
        down()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t0 = time.monotonic()
    try:
        if own_sandbox:
            print(f"booting sandbox {name} ...", file=sys.stderr, flush=True)
        sb, work = sandbox_with_rootfs(name, own=own_sandbox, inner_dir=INNER_DIR)
        conf = bench_config(bundles.base_config(), f"{INNER_DIR}/rootfs")
        plan = {
            **preset,
            "workdir": INNER_DIR,
            "config": conf,
            "runtimes": [{"name": n, "argv": all_runtimes[n]} for n in chosen],
            "result_path": f"{INNER_DIR}/result.json",
            "verbose": not args.quiet,
        }
        (work / "plan.json").write_text(json.dumps(plan, indent=1))
        shutil.copy(Path(__file__).resolve(), work / "run.py")
        print(
            f"running {preset['iterations']} iterations (+{preset['warmup']} warm-up) of {', '.join(chosen)}"
            " inside the sandbox ...",
            file=sys.stderr,
            flush=True,
        )
        proc = sb.run(
            [sys.executable, "-s", f"{INNER_DIR}/run.py", "--inner", f"{INNER_DIR}/plan.json"],
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if proc.returncode != 0:
            print(f"inner benchmark failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        results = json.loads((work / "result.json").read_text())
    finally:
        down()
    results["plan"] = {k: v for k, v in plan.items() if k not in ("config",)}
    results["bundle_config"] = conf
    results["machine"] = machine_info()
    results["command"] = " ".join(["benchmarks/run.py", *sys.argv[1:]])
    results["elapsed_s"] = round(time.monotonic() - t0, 1)
    table = render(results)
    print(table)
    if not args.no_json:
        RESULTS_DIR.mkdir(exist_ok=True)
        out = Path(args.json) if args.json else RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
        results["table"] = table
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"results: {out}  (whole run {results['elapsed_s']:.0f} s)")
    failed = any(results.get("failures", {}).get(n) for n in results["runtimes"])
    return 1 if SUBJECT in results["skipped"] or (failed and args.strict) else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few iterations, few containers")
    p.add_argument(
        "--iterations", type=int, help=f"timed iterations per runtime (default {FULL['iterations']})"
    )
    p.add_argument("--warmup", type=int, help=f"untimed iterations first (default {FULL['warmup']})")
    p.add_argument(
        "--memory", type=int, help=f"containers created at once for memory (default {FULL['memory']})"
    )
    p.add_argument(
        "--throughput", type=int, help=f"containers for throughput (default {FULL['throughput']})"
    )
    p.add_argument("--parallel", type=int, help=f"throughput workers (default {FULL['parallel']})")
    p.add_argument("--runtimes", help="comma-separated subset of oci-systemd,runc,crun")
    p.add_argument(
        "--oci-systemd", help="the oci-systemd command to time (default: this venv's entry point)"
    )
    p.add_argument(
        "--baseline",
        metavar="CMD",
        help="also time this oci-systemd command (another build), interleaved with --oci-systemd "
        "iteration by iteration; the table gets a `vs base` column",
    )
    p.add_argument("--sandbox", help="use this running sandbox instead of booting (and stopping) one")
    p.add_argument("--json", help="write the JSON here instead of benchmarks/results/<timestamp>.json")
    p.add_argument("--no-json", action="store_true", help="print the table only")
    p.add_argument("--strict", action="store_true", help="exit 1 when any iteration failed")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--inner", metavar="PLAN", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inner:
        return inner(args.inner)
    return outer(args)


if __name__ == "__main__":
    sys.exit(main())
