# SPDX-License-Identifier: Apache-2.0
"""The one module that talks to systemd over D-Bus.

The lifecycle's calls go through pystemd's raw sd-bus binding: it is synchronous and
connects in well under a millisecond, which matters because every `state` and `kill`
is a fresh process. pystemd's high-level `StartTransientUnit` refuses properties it does
not know (`PIDs` among them), so we encode `a(sv)` ourselves from explicit signatures
and hand the flat argument stream to `DBus.call_method`.

dbus-next (asyncio, any signature, signal streams) serves the long-running `events`
command, see `watch_unit()`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from oci_systemd.errors import JobFailedError, SystemdError, UnsupportedPropertyError

DEST = b"org.freedesktop.systemd1"
PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
UNIT = b"org.freedesktop.systemd1.Unit"
SCOPE = b"org.freedesktop.systemd1.Scope"
PROPS = b"org.freedesktop.DBus.Properties"

# (name, D-Bus signature, value); the signature is the variant's contents.
UnitProperty = tuple[str, str, Any]

# How long a job (start/stop of a scope) may take before we give up.
JOB_TIMEOUT_S = 30.0


class NoSuchUnit(SystemdError):
    pass


def _dbus_error(exc: Exception, what: str) -> SystemdError:
    """Turn a pystemd error into ours, keeping the D-Bus error name."""
    name = getattr(exc, "err_name", "") or ""
    message = getattr(exc, "err_message", "") or str(exc)
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    if not name and type(exc).__name__ == "DBusNoSuchUnitError":
        name = "org.freedesktop.systemd1.NoSuchUnit"
    if name == "org.freedesktop.systemd1.NoSuchUnit":
        return NoSuchUnit(f"{what}: {message}", dbus_name=name)
    return SystemdError(f"{what}: {message}", dbus_name=name or None)


def _dbuslib() -> Any:
    """pystemd's sd-bus binding, without running pystemd's package __init__.

    That __init__ imports the whole high-level API, lxml included (~12 ms at every start of a
    short-lived command); we only need the Cython `dbuslib` module and what it imports.
    """
    import sys

    mod = sys.modules.get("pystemd.dbuslib")
    if mod is not None:
        return mod
    if "pystemd" not in sys.modules:
        import importlib.util
        import types

        spec = importlib.util.find_spec("pystemd")
        if spec is None or not spec.submodule_search_locations:
            raise SystemdError("pystemd is not installed", hint="pip install pystemd")
        pkg = types.ModuleType("pystemd")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules["pystemd"] = pkg
    import pystemd.dbuslib

    return pystemd.dbuslib


def _encode_properties(props: Sequence[UnitProperty]) -> list[tuple[int, Any]]:
    apply_signature = _dbuslib().apply_signature

    args: list[tuple[int, Any]] = [(ord("a"), b"(sv)")]
    for name, signature, value in props:
        sig = signature.encode()
        args += [(ord("r"), b"sv"), (ord("s"), name.encode()), (ord("v"), sig)]
        args += apply_signature(sig, [_to_wire(value)])
        args += [(-1, None), (-1, None)]
    args.append((-1, None))
    return args


def _to_wire(value: Any) -> Any:
    """pystemd wants bytes for strings, also inside containers."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list | tuple):
        return type(value)(_to_wire(v) for v in value)
    return value


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def unit_name_escape(text: str) -> str:
    """Make a string valid inside a unit name: `\\xNN` for what unit names forbid.

    Unlike `systemd-escape`, '-' stays: ids like UUIDs keep their readable form
    (`runc-<id>.scope` does the same), and '+' (valid in ids) is escaped.
    """
    out = []
    for i, ch in enumerate(text):
        if ch.isascii() and (ch.isalnum() or ch in ":_-" or (ch == "." and i > 0)):
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode())
    return "".join(out)


class Systemd:
    """A connection to the system bus with the Manager calls the runtime needs."""

    def __init__(self) -> None:
        self._bus = _dbuslib().DBus()
        try:
            self._bus.open()
        except Exception as exc:  # pystemd raises its own hierarchy
            raise SystemdError(
                f"cannot connect to the systemd system bus: {exc}",
                hint="run inside a host booted with systemd or `oci-systemd sandbox exec NAME ...`",
            ) from exc
        self._jobs: dict[str, str] = {}
        self._subscribed = False
        self._job_callback: Any = None

    def close(self) -> None:
        self._bus.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw calls -------------------------------------------------------------------

    def _call(
        self,
        method: str,
        args: list[tuple[int, Any]],
        *,
        path: bytes = PATH,
        interface: bytes = MANAGER,
        what: str | None = None,
    ) -> Any:
        try:
            reply = self._bus.call_method(DEST, path, interface, method.encode(), args)
        except Exception as exc:
            raise _dbus_error(exc, what or method) from exc
        return reply.body

    def _get(self, path: bytes, interface: bytes, prop: str, signature: str) -> Any:
        try:
            return self._bus.get_property(DEST, path, interface, prop.encode(), signature.encode())
        except Exception as exc:
            raise _dbus_error(exc, f"get {prop}") from exc

    # -- jobs ------------------------------------------------------------------------

    def _subscribe_jobs(self) -> None:
        # Subscribe before enqueueing, or a fast job's JobRemoved can be missed.
        if self._subscribed:
            return
        jobs = self._jobs

        # pystemd stores metadata on the callback, so it must be a plain function, and it
        # keeps no reference to it: we hold one for as long as the bus lives.
        def on_job_removed(msg: Any, error: Any = None, userdata: Any = None) -> None:
            msg.process_reply(False)
            _id, job, _unit, result = msg.body
            jobs[_text(job)] = _text(result)

        self._job_callback = on_job_removed
        self._bus.match_signal(DEST, PATH, MANAGER, b"JobRemoved", on_job_removed)
        self._subscribed = True

    def _wait_job(self, job: str, unit: str, timeout: float = JOB_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while job not in self._jobs:
            self._bus.process()
            if job in self._jobs:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemdError(f"timed out waiting for systemd job {job} on {unit}")
            self._bus.wait(int(min(left, 1.0) * 1_000_000))
        return self._jobs.pop(job)

    # -- units -----------------------------------------------------------------------

    def start_transient_scope(self, name: str, properties: Sequence[UnitProperty]) -> None:
        """StartTransientUnit(name, "fail", props) and wait until its job is done.

        A unit of that name left failed or inactive (an OOM-killed scope, say) would
        make systemd answer "Unit ... already exists": reset it and try once more.
        """
        self._subscribe_jobs()
        args = [
            (ord("s"), name.encode()),
            (ord("s"), b"fail"),
            *_encode_properties(properties),
            (ord("a"), b"(sa(sv))"),
            (-1, None),
        ]
        try:
            job = _text(self._call("StartTransientUnit", args, what=f"start scope {name}"))
        except SystemdError as exc:
            if exc.dbus_name == "org.freedesktop.systemd1.UnitExists" and self._reset_if_dead(name):
                job = _text(self._call("StartTransientUnit", args, what=f"start scope {name}"))
            else:
                raise _property_error(exc, properties) from exc
        result = self._wait_job(job, name)
        if result != "done":
            self.reset_failed(name)
            raise JobFailedError(name, result)

    def _reset_if_dead(self, name: str) -> bool:
        state = self.active_state(name)
        if state in (None, "failed", "inactive"):
            self.reset_failed(name)
            return True
        return False

    def unit_path(self, name: str) -> bytes | None:
        try:
            path = self._call("GetUnit", [(ord("s"), name.encode())], what=f"get unit {name}")
        except NoSuchUnit:
            return None
        return path if isinstance(path, bytes) else str(path).encode()

    def active_state(self, name: str) -> str | None:
        """ActiveState of a loaded unit, or None when systemd does not know it."""
        path = self.unit_path(name)
        if path is None:
            return None
        return _text(self._get(path, UNIT, "ActiveState", "s"))

    def unit_properties(self, name: str, interface: str, names: Iterable[str]) -> dict[str, Any]:
        path = self.unit_path(name)
        if path is None:
            raise NoSuchUnit(f"unit {name} is not loaded", dbus_name="org.freedesktop.systemd1.NoSuchUnit")
        try:
            reply = self._bus.call_method(DEST, path, PROPS, b"GetAll", [(ord("s"), interface.encode())])
        except Exception as exc:
            raise _dbus_error(exc, f"get properties of {name}") from exc
        wanted = set(names)
        body = reply.body if isinstance(reply.body, dict) else dict(reply.body or [])
        return {_text(k): v for k, v in body.items() if _text(k) in wanted}

    def kill_unit(self, name: str, signal: int, *, who: str = "all") -> None:
        self._call(
            "KillUnit",
            [(ord("s"), name.encode()), (ord("s"), who.encode()), (ord("i"), signal)],
            what=f"kill {name}",
        )

    def stop_unit(self, name: str, *, wait: bool = True) -> None:
        self._subscribe_jobs()
        try:
            job = _text(
                self._call(
                    "StopUnit", [(ord("s"), name.encode()), (ord("s"), b"replace")], what=f"stop {name}"
                )
            )
        except NoSuchUnit:
            return
        if wait:
            self._wait_job(job, name)

    def reset_failed(self, name: str) -> None:
        try:
            self._call("ResetFailedUnit", [(ord("s"), name.encode())], what=f"reset {name}")
        except SystemdError:
            pass  # not loaded or not failed: nothing to reset

    def unit_processes(self, name: str) -> list[tuple[str, int, str]]:
        """GetUnitProcesses: (cgroup path, pid, command line) for every process of the unit."""
        body = self._call("GetUnitProcesses", [(ord("s"), name.encode())], what=f"list processes of {name}")
        rows = body if isinstance(body, list) else []
        return [(_text(cg), int(pid), _text(cmd)) for cg, pid, cmd in rows]

    def set_unit_properties(
        self, name: str, properties: Sequence[UnitProperty], *, runtime: bool = True
    ) -> None:
        args = [(ord("s"), name.encode()), (ord("b"), runtime), *_encode_properties(properties)]
        try:
            self._call("SetUnitProperties", args, what=f"set properties of {name}")
        except SystemdError as exc:
            raise _property_error(exc, properties) from exc

    def freeze_unit(self, name: str) -> None:
        self._call("FreezeUnit", [(ord("s"), name.encode())], what=f"freeze {name}")

    def thaw_unit(self, name: str) -> None:
        self._call("ThawUnit", [(ord("s"), name.encode())], what=f"thaw {name}")


def _property_error(exc: SystemdError, properties: Sequence[UnitProperty]) -> SystemdError:
    """Name the property systemd refused, so the user knows what to drop."""
    text = exc.message
    for name, _sig, _value in properties:
        if name in text:
            return UnsupportedPropertyError(name, text)
    return exc


@contextmanager
def connect() -> Iterator[Systemd]:
    bus = Systemd()
    try:
        yield bus
    finally:
        bus.close()


async def watch_unit(name: str, *, interval: float) -> AsyncIterator[dict[str, Any] | None]:
    """Yield the unit's PropertiesChanged (as plain dicts) as they come, and None every
    `interval` seconds of silence; ends when the unit is gone.

    dbus-next, because this is a long-lived signal stream: asyncio fits it, and the
    start-up cost that keeps it off the short commands' path doesn't matter here.
    """
    import asyncio

    from dbus_next.aio.message_bus import MessageBus
    from dbus_next.constants import BusType, MessageType
    from dbus_next.message import Message

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(
            Message(
                destination=DEST.decode(),
                path=PATH.decode(),
                interface=MANAGER.decode(),
                member="GetUnit",
                signature="s",
                body=[name],
            )
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            return
        unit_path = reply.body[0]
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def on_message(msg: Any) -> None:
            if (
                msg.message_type == MessageType.SIGNAL
                and msg.member == "PropertiesChanged"
                and msg.path == unit_path
            ):
                _iface, changed, _invalidated = msg.body
                queue.put_nowait({k: v.value for k, v in changed.items()})

        bus.add_message_handler(on_message)
        match = f"type='signal',interface='{PROPS.decode()}',member='PropertiesChanged',path='{unit_path}'"
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[match],
            )
        )
        while True:
            try:
                change = await asyncio.wait_for(queue.get(), timeout=interval)
            except TimeoutError:
                yield None
                continue
            yield change
    finally:
        bus.disconnect()  # type: ignore[no-untyped-call]
