# SPDX-License-Identifier: Apache-2.0
"""Run one oci-systemd command with per-phase timers (used by benchmarks/profile.py).

    python -s benchmarks/phases.py OUT.json -- <oci-systemd arguments>

Wraps the runtime's steps (functions and methods looked up at call time) with wall-clock
timers, runs the CLI, and writes {"phases": {name: [ms, ...]}, "imports_ms": .., "total_ms": ..}
to OUT.json. Modules are imported up front (timed as "imports"), so phase times exclude imports.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import atexit  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

WRAP = {
    "oci_systemd.runtime.lifecycle": ["Manager.__enter__"],
    "oci_systemd.runtime.verbs.create": ["prepare", "write_pid_file"],
    "oci_systemd.runtime.verbs.create_steps": [
        "CreateSteps._spawn_idler",
        "CreateSteps._recv",
        "CreateSteps._reap_idler_if_forked",
        "CreateSteps._start_unit",
        "CreateSteps._setup_network",
    ],
    "oci_systemd.runtime.placement": ["SystemScope.enter_leaf", "SystemScope.destroy"],
    "oci_systemd.runtime.status": ["status", "pid_alive"],  # pid_alive: wrapped where it is called
    "oci_systemd.runtime.verbs.kill": ["signal_init"],
    "oci_systemd.runtime.state": ["Store.claim", "Store.write", "Store.read", "Store.remove"],
    "oci_systemd.runtime.systemd": [
        "Systemd.__init__",
        "Systemd.start_transient_scope",
        "Systemd._wait_job",
        "Systemd.active_state",
        "Systemd.kill_unit",
        "Systemd.stop_unit",
        "Systemd.reset_failed",
        "Systemd.close",
    ],
    "oci_systemd.runtime.journal": ["log_event"],
    "oci_systemd.container.hooks": ["run_stage"],
}

phases: dict[str, list[float]] = {}


def _wrap(module: Any, qual: str) -> None:
    owner = module
    parts = qual.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part)
    fn = owner.__dict__.get(parts[-1]) if isinstance(owner, type) else getattr(owner, parts[-1], None)
    if fn is None or isinstance(fn, staticmethod | classmethod):
        return
    key = qual

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            phases.setdefault(key, []).append((time.perf_counter() - t) * 1000)

    timed.__name__ = getattr(fn, "__name__", "timed")
    setattr(owner, parts[-1], timed)


def main() -> None:
    out = sys.argv[1].replace("{pid}", str(os.getpid()))
    args = sys.argv[3:] if sys.argv[2] == "--" else sys.argv[2:]
    t_imp = time.perf_counter()
    cli = importlib.import_module("oci_systemd.cli.entry")
    for name, quals in WRAP.items():
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for qual in quals:
            try:
                _wrap(module, qual)
            except AttributeError:
                pass
    imports_ms = (time.perf_counter() - t_imp) * 1000

    def dump() -> None:
        with open(out, "w") as f:
            json.dump(
                {
                    "phases": phases,
                    "imports_ms": imports_ms,
                    "total_ms": (time.perf_counter() - T0) * 1000,
                },
                f,
            )

    atexit.register(dump)
    cli.main(args)


if __name__ == "__main__":
    main()
