#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The D-Bus calls of the runtime through each binding: ours (libsystemd's sd-bus via ctypes,
oci_systemd.runtime.systemd), pystemd's raw sd-bus binding (pystemd.dbuslib) and dbus-next
(asyncio, pure Python).

    .venv/bin/python benchmarks/dbus_bindings.py                 # against tests/unit/fake_systemd.py
    .venv/bin/python benchmarks/dbus_bindings.py --address unix:path=/run/dbus/system_bus_socket

The second form, run inside a sandbox (`oci-systemd sandbox exec NAME -- ...`), measures a real
systemd. Each binding runs in interpreters of its own: one per binding for the per-call columns
(`--worker`), and --processes short `python -c` runs per binding (interleaved with each other and
with `python -c pass`) for import and process, so the import is paid as a command pays it.
Per binding it reports:

- import: CPU time (less load-sensitive than wall clock) of the `import` of what the calls
  need (ms, median of --processes interpreters);
- process: wall clock of a whole interpreter that imports, connects and calls GetUnit,
  Properties.Get(ActiveState) and KillUnit (SIGCONT: systemd refuses signal 0), as `state` and
  `kill --all` do, minus the wall clock of `python -c pass` (ms, median);
- connect+GetUnit (a new connection, its first call, close: sd-bus authenticates on the first
  call), GetUnit, Get, KillUnit, StartTransientUnit (a scope holding one `sleep`, waited for its
  JobRemoved): µs per call, median of --iterations in one warm interpreter.

Against the fake, every round trip includes the fake's own dbus-next service (the same for all
three bindings); the differences between the columns are the bindings'.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEST = "org.freedesktop.systemd1"
PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
PROPS = "org.freedesktop.DBus.Properties"
BINDINGS = ("ctypes", "pystemd", "dbus-next")
CALLS = ("connect", "GetUnit", "Get", "KillUnit", "StartTransientUnit")
# The connect column is connect + GetUnit + close: sd-bus authenticates lazily, so a connection
# alone costs nothing until its first call (pystemd's close doesn't even flush).
HEADS = {"connect": "connect+GetUnit"}


# -- the workers: one binding each, in a fresh interpreter --------------------------------------


def _ctypes_worker(address: str, n: int, pid: int) -> dict[str, float]:
    prefix = "ctypes"
    from oci_systemd.runtime.systemd import connect

    out: dict[str, float] = {}
    sd = connect(address)
    scopes = [f"{prefix}-{i}.scope" for i in range(n)]
    props = [("Delegate", "b", True), ("PIDs", "au", [pid])]
    out["StartTransientUnit"] = _median(lambda i: sd.start_transient_scope(scopes[i], props), n)
    path = sd.unit_path(scopes[-1]) or ""

    def reconnect(_i: int) -> None:
        with connect(address) as fresh:
            fresh.unit_path(scopes[-1])

    out["connect"] = _median(reconnect, n)
    out["GetUnit"] = _median(lambda _i: sd.unit_path(scopes[-1]), n)
    out["Get"] = _median(lambda _i: sd.get_property(path, UNIT, "ActiveState", what="get"), n)
    out["KillUnit"] = _median(lambda _i: sd.kill_unit(scopes[-1], 18), n)
    sd.close()
    return out


def _pystemd_worker(address: str, n: int, pid: int) -> dict[str, float]:
    prefix = "pystemd"
    from pystemd.dbuslib import DBusAddress, apply_signature

    out: dict[str, float] = {}
    dest, mgr_path, mgr = DEST.encode(), PATH.encode(), MANAGER.encode()

    def bus_open() -> Any:
        bus = DBusAddress(address.encode())
        bus.open()
        return bus

    def get_unit(bus: Any, name: bytes) -> bytes:
        return bytes(bus.call_method(dest, mgr_path, mgr, b"GetUnit", [(ord("s"), name)]).body)

    def kill(bus: Any, name: bytes) -> None:
        bus.call_method(
            dest, mgr_path, mgr, b"KillUnit", [(ord("s"), name), (ord("s"), b"all"), (ord("i"), 18)]
        )

    bus = bus_open()
    jobs: dict[bytes, bytes] = {}

    def on_job_removed(msg: Any, error: Any = None, userdata: Any = None) -> None:
        msg.process_reply(False)
        _id, job, _unit, result = msg.body
        jobs[bytes(job)] = bytes(result)

    bus.match_signal(dest, mgr_path, mgr, b"JobRemoved", on_job_removed)

    def start(i: int) -> None:
        # a(sv) by hand: pystemd's high-level StartTransientUnit refuses PIDs (issue #83).
        args: list[tuple[int, Any]] = [(ord("s"), f"{prefix}-{i}.scope".encode()), (ord("s"), b"fail")]
        args.append((ord("a"), b"(sv)"))
        for name, sig, value in (("Delegate", b"b", True), ("PIDs", b"au", [pid])):
            args += [(ord("r"), b"sv"), (ord("s"), name.encode()), (ord("v"), sig)]
            args += apply_signature(sig, [value])
            args += [(-1, None), (-1, None)]
        args += [(-1, None), (ord("a"), b"(sa(sv))"), (-1, None)]
        job = bytes(bus.call_method(dest, mgr_path, mgr, b"StartTransientUnit", args).body)
        while job not in jobs:
            bus.process()
            if job not in jobs:
                bus.wait(100_000)
        assert jobs.pop(job) == b"done"

    out["StartTransientUnit"] = _median(start, n)
    last = f"{prefix}-{n - 1}.scope".encode()
    path = get_unit(bus, last)

    def reconnect(_i: int) -> None:
        fresh = bus_open()
        get_unit(fresh, last)
        fresh.close()

    out["connect"] = _median(reconnect, n)
    out["GetUnit"] = _median(lambda _i: get_unit(bus, last), n)
    out["Get"] = _median(lambda _i: bus.get_property(dest, path, UNIT.encode(), b"ActiveState", b"s"), n)
    out["KillUnit"] = _median(lambda _i: kill(bus, last), n)
    bus.close()
    return out


def _dbus_next_worker(address: str, n: int, pid: int) -> dict[str, float]:
    prefix = "dbus-next"
    import asyncio

    from dbus_next.aio.message_bus import MessageBus
    from dbus_next.constants import MessageType
    from dbus_next.message import Message
    from dbus_next.signature import Variant

    out: dict[str, float] = {}

    async def call(bus: Any, path: str, interface: str, member: str, signature: str, body: list[Any]) -> Any:
        msg = Message(
            destination=DEST, path=path, interface=interface, member=member, signature=signature, body=body
        )
        reply = await bus.call(msg)
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        return reply.body

    async def main() -> None:
        bus = await MessageBus(bus_address=address).connect()
        jobs: dict[str, asyncio.Future[str]] = {}
        loop = asyncio.get_running_loop()

        def on_message(msg: Any) -> None:
            if msg.message_type == MessageType.SIGNAL and msg.member == "JobRemoved":
                _id, job, _unit, result = msg.body
                jobs.setdefault(job, loop.create_future()).set_result(result)

        bus.add_message_handler(on_message)
        rule = f"type='signal',sender='{DEST}',interface='{MANAGER}',member='JobRemoved'"
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )

        async def start(i: int) -> None:
            props = [["Delegate", Variant("b", True)], ["PIDs", Variant("au", [pid])]]
            body = [f"{prefix}-{i}.scope", "fail", props, []]
            [job] = await call(bus, PATH, MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", body)
            assert await jobs.setdefault(job, loop.create_future()) == "done"

        async def reconnect() -> None:
            fresh = await MessageBus(bus_address=address).connect()
            await call(fresh, PATH, MANAGER, "GetUnit", "s", [last])
            fresh.disconnect()  # type: ignore[no-untyped-call]

        last = f"{prefix}-{n - 1}.scope"
        out["StartTransientUnit"] = await _amedian(start, n)
        [path] = await call(bus, PATH, MANAGER, "GetUnit", "s", [last])
        out["connect"] = await _amedian(lambda _i: reconnect(), n)
        out["GetUnit"] = await _amedian(lambda _i: call(bus, PATH, MANAGER, "GetUnit", "s", [last]), n)
        out["Get"] = await _amedian(lambda _i: call(bus, path, PROPS, "Get", "ss", [UNIT, "ActiveState"]), n)
        kill = [last, "all", 18]
        out["KillUnit"] = await _amedian(lambda _i: call(bus, PATH, MANAGER, "KillUnit", "ssi", kill), n)
        bus.disconnect()  # type: ignore[no-untyped-call]

    asyncio.run(main())
    return out


# One short command's worth per binding, in `python -c` (A: the address, U: a unit): import,
# connect, GetUnit, Properties.Get(ActiveState), KillUnit(SIGCONT). Each prints its import time, ms.
ONCE = {
    "ctypes": """
from oci_systemd.runtime.systemd import connect
T = time.process_time() - T
with connect(A) as sd:
    sd.get_property(sd.unit_path(U), "org.freedesktop.systemd1.Unit", "ActiveState", what="get")
    sd.kill_unit(U, 18)
""",
    "pystemd": """
from pystemd.dbuslib import DBusAddress
T = time.process_time() - T
bus = DBusAddress(A.encode())
bus.open()
D, P, M = b"org.freedesktop.systemd1", b"/org/freedesktop/systemd1", b"org.freedesktop.systemd1.Manager"
path = bus.call_method(D, P, M, b"GetUnit", [(ord("s"), U.encode())]).body
bus.get_property(D, path, b"org.freedesktop.systemd1.Unit", b"ActiveState", b"s")
bus.call_method(D, P, M, b"KillUnit", [(ord("s"), U.encode()), (ord("s"), b"all"), (ord("i"), 18)])
bus.close()
""",
    "dbus-next": """
import asyncio
from dbus_next.aio.message_bus import MessageBus
from dbus_next.message import Message
T = time.process_time() - T
D, P, M = "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"
async def main():
    bus = await MessageBus(bus_address=A).connect()
    get_unit = Message(destination=D, path=P, interface=M, member="GetUnit", signature="s", body=[U])
    [path] = (await bus.call(get_unit)).body
    props = "org.freedesktop.DBus.Properties"
    body = ["org.freedesktop.systemd1.Unit", "ActiveState"]
    get = Message(destination=D, path=path, interface=props, member="Get", signature="ss", body=body)
    await bus.call(get)
    body = [U, "all", 18]
    kill = Message(destination=D, path=P, interface=M, member="KillUnit", signature="ssi", body=body)
    await bus.call(kill)
    bus.disconnect()
asyncio.run(main())
""",
}


def _once(binding: str, address: str, unit: str) -> tuple[float, float]:
    """(wall clock of the whole interpreter, its import time), ms."""
    head = f"import time\nT = time.process_time()\nA, U = {address!r}, {unit!r}\n"
    code = f"{head}{ONCE[binding]}print(T * 1e3)\n"
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return (time.perf_counter() - t) * 1e3, float(out.stdout.split()[-1])


def _median(fn: Any, n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


async def _amedian(fn: Any, n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        await fn(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


WORKERS = {"ctypes": _ctypes_worker, "pystemd": _pystemd_worker, "dbus-next": _dbus_next_worker}


# -- the driver ---------------------------------------------------------------------------------


def _worker(binding: str, address: str, *, n: int, pid: int) -> dict[str, float]:
    argv = [
        sys.executable,
        __file__,
        "--worker",
        binding,
        "--address",
        address,
        "-n",
        str(n),
        "--pid",
        str(pid),
    ]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{binding} worker failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


def _wall(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
    return (time.perf_counter() - t) * 1e3


def measure(address: str, *, iterations: int, processes: int) -> dict[str, dict[str, float]]:
    sleeper = subprocess.Popen(["sleep", "3600"])  # the process every bench scope holds
    try:
        results: dict[str, dict[str, float]] = {}
        for binding in BINDINGS:
            results[binding] = _worker(binding, address, n=iterations, pid=sleeper.pid)
        # The scope started last holds the sleeper (systemd has collected the emptied ones).
        target = f"{BINDINGS[-1]}-{iterations - 1}.scope"
        walls: dict[str, list[float]] = {b: [] for b in BINDINGS}
        imports: dict[str, list[float]] = {b: [] for b in BINDINGS}
        bases: list[float] = []
        for _ in range(processes):  # interleaved, so a busy moment hits all of them
            bases.append(_wall([sys.executable, "-c", "pass"]))
            for binding in BINDINGS:
                wall, imported = _once(binding, address, target)
                walls[binding].append(wall)
                imports[binding].append(imported)
        for binding in BINDINGS:
            results[binding]["import"] = statistics.median(imports[binding])
            results[binding]["process"] = statistics.median(walls[binding]) - statistics.median(bases)
        return results
    finally:
        sleeper.kill()
        sleeper.wait()


def _table(results: dict[str, dict[str, float]]) -> str:
    head = (
        "| binding | import, ms | process, ms | "
        + " | ".join(f"{HEADS.get(c, c)}, µs" for c in CALLS)
        + " |"
    )
    rows = [head, "|" + "---|" * (3 + len(CALLS))]
    for binding, r in results.items():
        cells = [f"{r['import']:.1f}", f"{r['process']:.1f}", *(f"{r[c]:.0f}" for c in CALLS)]
        rows.append(f"| {binding} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", help="D-Bus address of a systemd (default: start the fake one)")
    parser.add_argument("--iterations", "-n", type=int, default=200)
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--worker", choices=BINDINGS, help=argparse.SUPPRESS)
    parser.add_argument("--pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.address, args.iterations, args.pid)))
        return
    fake = None
    address = args.address
    if address is None:
        sys.path.insert(0, str(ROOT / "tests" / "unit"))
        from fake_systemd import FakeSystemd  # type: ignore[import-not-found]

        tmp = tempfile.mkdtemp(prefix="dbus-bench-")
        fake = FakeSystemd.start(Path(tmp))
        fake.job_delay = 0.0
        address = fake.address
    try:
        results = measure(address, iterations=args.iterations, processes=args.processes)
    finally:
        if fake is not None:
            fake.stop()
    where = "the fake systemd (tests/unit/fake_systemd.py)" if fake else address
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, against {where}")
    print(f"{args.iterations} calls per column, {args.processes} processes for import/process\n")
    print(_table(results))


if __name__ == "__main__":
    main()
