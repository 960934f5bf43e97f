# SPDX-License-Identifier: Apache-2.0
"""The one module that talks to systemd over D-Bus.

Two bindings of libsystemd's sd-bus sit behind `Systemd`, both synchronous (every `create`,
`state` and `kill` is a fresh process, so connecting must cost well under a millisecond):

- ctypes, straight onto `libsystemd.so.0`, for every call of the lifecycle commands:
  StartTransientUnit (with its JobRemoved wait) and SetUnitProperties, whose `a(sv)` is encoded
  from each property's D-Bus signature with sd_bus_message_open_container/append_basic/
  append_array (`_SdBus.call_with_properties`), and the flat calls GetUnit, Properties.Get,
  KillUnit, ResetFailedUnit, FreezeUnit, ThawUnit, StopUnit. Loading it costs `import ctypes`
  (~1-2 ms); pystemd's Python layer costs ~14 ms (pprint -> dataclasses, uuid, pathlib).
- pystemd's raw binding, imported on first use, for GetUnitProcesses (`ps`) and GetAll
  (`events`, properties of container types): their replies are nested containers that pystemd
  decodes for us, and neither command is on the hot path. When libsystemd cannot be loaded
  through ctypes, pystemd serves every call (StartTransientUnit included, with `a(sv)`
  hand-encoded by `_encode_properties`: pystemd's high-level API refuses properties it does
  not know, `PIDs` among them).

dbus-next (asyncio, any signature, signal streams) serves the long-running `events`
command, see `watch_unit()`.

No `typing`, `collections.abc` or `contextlib` at run time (~8 ms on every command):
annotations are strings and the typing imports sit behind `TYPE_CHECKING`.
"""

from __future__ import annotations

import time

from oci_systemd.errors import JobFailedError, SystemdError, UnsupportedPropertyError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~5 ms per command
if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Sequence
    from typing import Any

    # (name, D-Bus signature, value); the signature is the variant's contents.
    UnitProperty = tuple[str, str, Any]

DEST = b"org.freedesktop.systemd1"
PATH = b"/org/freedesktop/systemd1"
MANAGER = b"org.freedesktop.systemd1.Manager"
UNIT = b"org.freedesktop.systemd1.Unit"
SCOPE = b"org.freedesktop.systemd1.Scope"
PROPS = b"org.freedesktop.DBus.Properties"

# How long a job (start/stop of a scope) may take before we give up.
JOB_TIMEOUT_S = 30.0


class NoSuchUnit(SystemdError):
    pass


def _dbus_error(exc: Exception, what: str) -> SystemdError:
    """Turn a pystemd error into ours, keeping the D-Bus error name."""
    name = getattr(exc, "err_name", "") or ""
    message = getattr(exc, "err_message", "") or str(exc)
    if not name and type(exc).__name__ == "DBusNoSuchUnitError":
        name = "org.freedesktop.systemd1.NoSuchUnit"
    return _error(name, message, what)


def _error(name: str | bytes, message: str | bytes, what: str) -> SystemdError:
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    if isinstance(message, bytes):
        message = message.decode(errors="replace")
    if name == "org.freedesktop.systemd1.NoSuchUnit":
        return NoSuchUnit(f"{what}: {message}", dbus_name=name)
    return SystemdError(f"{what}: {message}", dbus_name=name or None)


# -- libsystemd through ctypes ----------------------------------------------------------

# Variant contents the fast Properties.Get reads, with the ctypes type each is read into
# (by name: ctypes is imported only when libsystemd is loaded).
_SIMPLE_VARIANTS = {
    b"s": "c_char_p",
    b"o": "c_char_p",
    b"g": "c_char_p",
    b"b": "c_int",
    b"y": "c_uint8",
    b"n": "c_int16",
    b"q": "c_uint16",
    b"i": "c_int32",
    b"u": "c_uint32",
    b"x": "c_int64",
    b"t": "c_uint64",
    b"d": "c_double",
}


class _Lib:
    """libsystemd.so.0's sd-bus, loaded once per process (`_libsystemd()`)."""

    def __init__(self) -> None:
        import ctypes

        lib = ctypes.CDLL("libsystemd.so.0")
        vp = ctypes.c_void_p

        class Error(ctypes.Structure):  # sd_bus_error
            _fields_ = [
                ("name", ctypes.c_char_p),
                ("message", ctypes.c_char_p),
                ("_need_free", ctypes.c_int),
            ]

        def declare(name: str, restype: Any, *argtypes: Any) -> Any:
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = list(argtypes)
            return fn

        def variadic(name: str) -> Any:
            # Only the return type: ctypes would convert the variadic arguments by the
            # declared ones, so callers pass ctypes-typed values for every argument.
            fn = getattr(lib, name)
            fn.restype = ctypes.c_int
            return fn

        self.ct = ctypes
        self.Error = Error
        # int (*)(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
        self.Handler = ctypes.CFUNCTYPE(ctypes.c_int, vp, vp, vp)
        self.open_system = declare("sd_bus_open_system", ctypes.c_int, ctypes.POINTER(vp))
        self.flush_close_unref = declare("sd_bus_flush_close_unref", vp, vp)
        self.call_method = variadic("sd_bus_call_method")
        self.message_read = variadic("sd_bus_message_read")
        self.message_peek_type = declare(
            "sd_bus_message_peek_type", ctypes.c_int, vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)
        )
        self.message_unref = declare("sd_bus_message_unref", vp, vp)
        self.error_free = declare("sd_bus_error_free", None, ctypes.POINTER(Error))
        self.match_signal = declare(
            "sd_bus_match_signal",
            ctypes.c_int,
            vp,
            vp,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            self.Handler,
            vp,
        )
        self.process = declare("sd_bus_process", ctypes.c_int, vp, vp)
        self.wait = declare("sd_bus_wait", ctypes.c_int, vp, ctypes.c_uint64)
        # Building a message value by value (the encoder of `_SdBus.call_with_properties`):
        # every function here has fixed arguments, so ctypes converts them by the declared
        # types and no C default promotion of a variadic argument can go wrong.
        self.new_method_call = declare(
            "sd_bus_message_new_method_call",
            ctypes.c_int,
            vp,
            ctypes.POINTER(vp),
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
        )
        self.append_basic = declare("sd_bus_message_append_basic", ctypes.c_int, vp, ctypes.c_char, vp)
        self.append_array = declare(
            "sd_bus_message_append_array", ctypes.c_int, vp, ctypes.c_char, vp, ctypes.c_size_t
        )
        self.open_container = declare(
            "sd_bus_message_open_container", ctypes.c_int, vp, ctypes.c_char, ctypes.c_char_p
        )
        self.close_container = declare("sd_bus_message_close_container", ctypes.c_int, vp)
        self.send_call = declare(
            "sd_bus_call", ctypes.c_int, vp, vp, ctypes.c_uint64, ctypes.POINTER(Error), ctypes.POINTER(vp)
        )


_LIB: _Lib | None = None
_LIB_TRIED = False


def _libsystemd() -> _Lib | None:
    """The ctypes binding, or None when libsystemd.so.0 (or a symbol of it) is missing."""
    global _LIB, _LIB_TRIED
    if not _LIB_TRIED:
        _LIB_TRIED = True
        try:
            _LIB = _Lib()
        except (OSError, AttributeError, ImportError):
            _LIB = None
    return _LIB


def _strerror(r: int) -> str:
    import os

    return os.strerror(-r) if r < 0 else f"error {r}"


# -- encoding values from their D-Bus signature (for the ctypes path) -------------------


class PropertyEncodingError(SystemdError):
    """A value does not fit its D-Bus signature, or the signature is not valid.

    Found before anything is sent, so it is never taken for systemd refusing a property
    (`_property_error`); the message names the property when there is one.
    """


# Fixed-size basic types: (ctypes type name, smallest, largest). 'b' travels as a 32-bit
# int (sd-bus's `int` bool), 'h' as the fd number sd-bus dups into the message.
_FIXED: dict[str, tuple[str, int, int]] = {
    "y": ("c_uint8", 0, 2**8 - 1),
    "b": ("c_int", 0, 1),
    "n": ("c_int16", -(2**15), 2**15 - 1),
    "q": ("c_uint16", 0, 2**16 - 1),
    "i": ("c_int32", -(2**31), 2**31 - 1),
    "u": ("c_uint32", 0, 2**32 - 1),
    "x": ("c_int64", -(2**63), 2**63 - 1),
    "t": ("c_uint64", 0, 2**64 - 1),
    "h": ("c_int", 0, 2**31 - 1),
    "d": ("c_double", 0, 0),  # no range check for doubles
}
_STRINGS = frozenset("sog")
# Arrays of these go in with one sd_bus_message_append_array (a C array of the element
# type). sd-bus refuses it for 'b' (it would have to check every value is 0 or 1) and 'h'
# (each fd must be dup'ed into the message): those go element by element.
_ARRAY_FIXED = frozenset("ynqiuxtd")
# D-Bus allows 32 levels of arrays plus 32 of structs.
_MAX_DEPTH = 64
_SPLIT_CACHE: dict[str, list[str]] = {}


def split_signature(signature: str) -> list[str]:
    """The complete types of a D-Bus signature: "sa(st)v" -> ["s", "a(st)", "v"].

    Raises PropertyEncodingError saying what is wrong with an invalid one.
    """
    parts = _SPLIT_CACHE.get(signature)
    if parts is None:
        if not signature.isascii() or len(signature) > 255:
            raise PropertyEncodingError(f"invalid D-Bus signature {signature!r}: not ASCII or too long")
        parts = []
        i = 0
        while i < len(signature):
            end = _type_end(signature, i, 0)
            parts.append(signature[i:end])
            i = end
        _SPLIT_CACHE[signature] = parts
    return parts


def _type_end(sig: str, i: int, depth: int) -> int:
    """Where the complete type starting at sig[i] ends (one past its last character)."""
    if depth > _MAX_DEPTH:
        raise PropertyEncodingError(f"invalid D-Bus signature {sig!r}: nested too deeply")
    if i >= len(sig):
        raise PropertyEncodingError(f"invalid D-Bus signature {sig!r}: a container type is not complete")
    code = sig[i]
    if code in _FIXED or code in _STRINGS or code == "v":
        return i + 1
    if code == "a":
        if not sig.startswith("{", i + 1):
            return _type_end(sig, i + 1, depth + 1)
        key = sig[i + 2 : i + 3]
        if not key or (key not in _FIXED and key not in _STRINGS):
            raise PropertyEncodingError(f"invalid D-Bus signature {sig!r}: a dict key must be a basic type")
        end = _type_end(sig, i + 3, depth + 1)
        if not sig.startswith("}", end):
            raise PropertyEncodingError(
                f"invalid D-Bus signature {sig!r}: a dict entry holds one key and one value"
            )
        return end + 1
    if code == "(":
        j = i + 1
        if sig.startswith(")", j):
            raise PropertyEncodingError(f"invalid D-Bus signature {sig!r}: empty struct")
        while not sig.startswith(")", j):
            j = _type_end(sig, j, depth + 1)
        return j + 1
    raise PropertyEncodingError(f"invalid D-Bus signature {sig!r}: unexpected {code!r} at offset {i}")


def _single_type(signature: str) -> str:
    """The signature of one variant's contents: exactly one complete type."""
    if len(split_signature(signature)) != 1:
        raise PropertyEncodingError(
            f"invalid D-Bus signature {signature!r}: a variant holds exactly one complete type"
        )
    return signature


def _fixed_value(code: str, value: Any) -> int | float:
    """`value` checked against a fixed-size type: ctypes would silently wrap it."""
    if code == "d":
        if isinstance(value, int | float):
            return float(value)
        raise PropertyEncodingError(f"{value!r} is not a number (D-Bus type 'd')")
    if not isinstance(value, int):
        raise PropertyEncodingError(f"{value!r} is not an integer (D-Bus type {code!r})")
    _ctype, lo, hi = _FIXED[code]
    if code == "b":
        return 1 if value else 0
    if not lo <= value <= hi:
        raise PropertyEncodingError(f"{value} is out of range for D-Bus type {code!r}")
    return value


def _string_value(code: str, value: Any) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise PropertyEncodingError(f"{value!r} is not a string (D-Bus type {code!r})")
    if b"\0" in value:  # a C string would end there, silently
        raise PropertyEncodingError(f"{value!r} contains a NUL byte (D-Bus type {code!r})")
    return value


def _items(sig: str, value: Any) -> Any:
    """The elements of an array value: a list or tuple; a dict for `a{..}`."""
    if sig.startswith("{") and isinstance(value, dict):
        return value.items()
    if isinstance(value, list | tuple):
        return value
    raise PropertyEncodingError(f"{value!r} is not a list (D-Bus type 'a{sig}')")


class _SdBus:
    """One sd-bus connection to the system bus, and the flat calls over it."""

    def __init__(self, lib: _Lib) -> None:
        self.lib = lib
        ct = lib.ct
        self.bus = ct.c_void_p()
        r = lib.open_system(ct.byref(self.bus))
        if r < 0:
            raise OSError(-r, _strerror(r))

    def close(self) -> None:
        if self.bus:
            self.lib.flush_close_unref(self.bus)
            self.bus = self.lib.ct.c_void_p()

    def call(self, path: bytes, interface: bytes, method: bytes, what: str, types: bytes, *args: Any) -> Any:
        """sd_bus_call_method; returns the reply (a sd_bus_message*, to `unref`).

        `args` are ctypes values matching `types` (c_char_p for s/o, c_int32 for i, ...).
        """
        lib = self.lib
        ct = lib.ct
        err = lib.Error()
        reply = ct.c_void_p()
        r = lib.call_method(
            self.bus,
            ct.c_char_p(DEST),
            ct.c_char_p(path),
            ct.c_char_p(interface),
            ct.c_char_p(method),
            ct.byref(err),
            ct.byref(reply),
            ct.c_char_p(types),
            *args,
        )
        self._check_call(r, err, what)
        return reply

    def _check_call(self, r: int, err: Any, what: str) -> None:
        """Raise the D-Bus error of a failed call (its name kept), and free it either way."""
        try:
            if r < 0:
                raise _error(err.name or b"", err.message or _strerror(r), what)
        finally:
            self.lib.error_free(self.lib.ct.byref(err))

    # -- calls whose arguments are encoded from D-Bus signatures ------------------------

    def call_with_properties(
        self,
        method: bytes,
        head: Sequence[tuple[str, Any]],
        properties: Sequence[UnitProperty],
        tail: Sequence[tuple[str, Any]],
        what: str,
    ) -> Any:
        """Call a Manager method taking `head`, then `a(sv)` unit properties, then `tail`
        ((signature, value) pairs); returns the reply (to `unref`).

        PropertyEncodingError when a value does not fit its signature (nothing is sent);
        the D-Bus error, name kept, when systemd refuses the call.
        """
        lib = self.lib
        ct = lib.ct
        msg = ct.c_void_p()
        r = lib.new_method_call(self.bus, ct.byref(msg), DEST, PATH, MANAGER, method)
        if r < 0:
            raise SystemdError(f"{what}: cannot build the D-Bus message: {_strerror(r)}")
        try:
            for sig, value in head:
                self.append(msg, sig, value)
            self.append_properties(msg, properties)
            for sig, value in tail:
                self.append(msg, sig, value)
            err = lib.Error()
            reply = ct.c_void_p()
            # Timeout 0: sd-bus's default (25 s), as pystemd's call_method used.
            r = lib.send_call(self.bus, msg, 0, ct.byref(err), ct.byref(reply))
            self._check_call(r, err, what)
            return reply
        finally:
            lib.message_unref(msg)

    def append_properties(self, msg: Any, properties: Sequence[UnitProperty]) -> None:
        """`a(sv)`: each (name, signature, value) as a struct of its name and a variant."""
        self._open(msg, b"a", b"(sv)")
        for name, sig, value in properties:
            try:
                self._open(msg, b"r", b"sv")
                self._append_basic(msg, "s", name)
                self._open(msg, b"v", _single_type(sig).encode())
                self.append(msg, sig, value)
                self._close(msg)
                self._close(msg)
            except PropertyEncodingError as exc:
                raise PropertyEncodingError(
                    f"cannot send unit property {name} as D-Bus type {sig!r}: {exc}"
                ) from None
        self._close(msg)

    def append(self, msg: Any, sig: str, value: Any) -> None:
        """Append `value` as the one complete type `sig`, recursing into containers.

        Strings are str or bytes; integers int (range-checked); 'd' int or float; arrays
        lists or tuples (`ay` also bytes, `a{..}` also a dict); structs and dict entries
        sequences of their fields; a variant ('v') is a (signature, value) pair.
        """
        code = sig[0]
        if code in _FIXED or code in _STRINGS:
            self._append_basic(msg, code, value)
        elif code == "a":
            self._append_array(msg, sig[1:], value)
        elif code == "v":
            if not (isinstance(value, tuple | list) and len(value) == 2 and isinstance(value[0], str)):
                raise PropertyEncodingError(f"{value!r} is not a (signature, value) pair (D-Bus type 'v')")
            inner = _single_type(value[0])
            self._open(msg, b"v", inner.encode())
            self.append(msg, inner, value[1])
            self._close(msg)
        else:  # "(...)" a struct, "{..}" a dict entry (only ever inside an array)
            fields = split_signature(sig[1:-1])
            if not isinstance(value, tuple | list) or len(value) != len(fields):
                raise PropertyEncodingError(
                    f"{value!r} does not have {len(fields)} fields (D-Bus type {sig!r})"
                )
            self._open(msg, b"r" if code == "(" else b"e", sig[1:-1].encode())
            for field_sig, field in zip(fields, value, strict=True):
                self.append(msg, field_sig, field)
            self._close(msg)

    def _append_array(self, msg: Any, elem: str, value: Any) -> None:
        ct = self.lib.ct
        if elem in _ARRAY_FIXED:
            # One call for the whole array (PIDs, AllowedCPUs' bitmask, ...).
            if elem == "y" and isinstance(value, bytes | bytearray):
                data: Any = bytes(value)
                size = len(data)
            else:
                values = [_fixed_value(elem, v) for v in _items(elem, value)]
                ctype = getattr(ct, _FIXED[elem][0])
                data = (ctype * len(values))(*values)
                size = ct.sizeof(data)
            self._check(self.lib.append_array(msg, elem.encode(), data, size), f"a{elem}")
            return
        items = _items(elem, value)
        self._open(msg, b"a", elem.encode())
        for item in items:
            self.append(msg, elem, item)
        self._close(msg)

    def _append_basic(self, msg: Any, code: str, value: Any) -> None:
        ct = self.lib.ct
        if code in _STRINGS:
            # For strings sd-bus wants the char* itself, not a pointer to it.
            ref: Any = _string_value(code, value)
        else:
            ref = ct.byref(getattr(ct, _FIXED[code][0])(_fixed_value(code, value)))
        self._check(self.lib.append_basic(msg, code.encode(), ref), code, value)

    def _open(self, msg: Any, kind: bytes, contents: bytes) -> None:
        self._check(self.lib.open_container(msg, kind, contents), contents.decode())

    def _close(self, msg: Any) -> None:
        self._check(self.lib.close_container(msg), "a container")

    @staticmethod
    def _check(r: int, sig: str, value: Any = None) -> None:
        # sd-bus validates what Python can't cheaply: UTF-8, object paths, signatures.
        if r < 0:
            shown = "" if value is None else f"{value!r} as "
            raise PropertyEncodingError(f"sd-bus refused {shown}D-Bus type {sig!r}: {_strerror(r)}")

    def unref(self, reply: Any) -> None:
        self.lib.message_unref(reply)

    def read(self, reply: Any, types: bytes, *refs: Any) -> None:
        r = self.lib.message_read(reply, self.lib.ct.c_char_p(types), *refs)
        if r < 0:
            raise SystemdError(f"cannot read a D-Bus reply ({types.decode()}): {_strerror(r)}")

    def call_s(self, method: bytes, *strings: str, what: str) -> None:
        """A Manager method taking only strings and returning nothing we need."""
        c_char_p = self.lib.ct.c_char_p
        reply = self.call(
            PATH, MANAGER, method, what, b"s" * len(strings), *(c_char_p(s.encode()) for s in strings)
        )
        self.unref(reply)

    def call_o(self, method: bytes, *args: Any, types: bytes, what: str) -> bytes:
        """A Manager method returning one object path (GetUnit, StopUnit's job)."""
        return self.read_o(self.call(PATH, MANAGER, method, what, types, *args))

    def read_o(self, reply: Any) -> bytes:
        """The object path a reply holds (a job, a unit); unrefs the reply."""
        try:
            out = self.lib.ct.c_char_p()
            self.read(reply, b"o", self.lib.ct.byref(out))
            return out.value or b""
        finally:
            self.unref(reply)

    def get(self, path: bytes, interface: bytes, prop: str, what: str) -> tuple[bool, Any]:
        """Properties.Get: (True, value) for a variant of a basic type, else (False, None).

        Strings come back as bytes, as pystemd gives them.
        """
        lib = self.lib
        ct = lib.ct
        reply = self.call(
            path, PROPS, b"Get", what, b"ss", ct.c_char_p(interface), ct.c_char_p(prop.encode())
        )
        try:
            kind = ct.c_char()
            contents = ct.c_char_p()
            r = lib.message_peek_type(reply, ct.byref(kind), ct.byref(contents))
            ctype = _SIMPLE_VARIANTS.get(contents.value or b"") if r > 0 and kind.value == b"v" else None
            if ctype is None:
                return False, None
            out = getattr(ct, ctype)()
            self.read(reply, b"v", ct.c_char_p(contents.value), ct.byref(out))
            value = out.value
            if contents.value == b"b":
                return True, bool(value)
            if value is None:  # an empty string
                return True, b""
            return True, value
        finally:
            self.unref(reply)

    def subscribe_jobs(self, jobs: dict[str, str]) -> Any:
        """Record every JobRemoved (job path -> result) in `jobs`; returns the callback, which
        must live as long as the bus."""
        lib = self.lib
        ct = lib.ct

        def on_job_removed(msg: Any, _userdata: Any, _error: Any) -> int:
            id_ = ct.c_uint32()
            job, unit, result = ct.c_char_p(), ct.c_char_p(), ct.c_char_p()
            r = lib.message_read(
                ct.c_void_p(msg),
                ct.c_char_p(b"uoss"),
                ct.byref(id_),
                ct.byref(job),
                ct.byref(unit),
                ct.byref(result),
            )
            if r >= 0:
                jobs[(job.value or b"").decode()] = (result.value or b"").decode()
            return 0

        callback = lib.Handler(on_job_removed)
        r = lib.match_signal(self.bus, None, DEST, PATH, MANAGER, b"JobRemoved", callback, None)
        if r < 0:
            raise SystemdError(f"cannot subscribe to systemd's JobRemoved: {_strerror(r)}")
        return callback

    def process(self) -> None:
        while True:
            r = self.lib.process(self.bus, None)
            if r < 0:
                raise SystemdError(f"D-Bus connection failed: {_strerror(r)}")
            if r == 0:
                return

    def wait(self, usec: int) -> None:
        r = self.lib.wait(self.bus, usec)
        if r < 0 and r != -4:  # -EINTR
            raise SystemdError(f"D-Bus connection failed: {_strerror(r)}")


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
    """A connection to the system bus with the Manager calls the runtime needs.

    Every lifecycle call goes over `_sd` (ctypes; None when libsystemd can't be loaded);
    GetUnitProcesses, GetAll and, without libsystemd, everything go over pystemd's bus,
    opened on first use (`_py()`): create, state, kill and delete never import it.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, str] = {}
        self._subscribed = False
        self._job_callback: Any = None
        self._sd_job_callback: Any = None
        self._pybus: Any = None
        self._sd: _SdBus | None = None
        lib = _libsystemd()
        try:
            if lib is not None:
                self._sd = _SdBus(lib)
            else:
                self._py()
        except SystemdError:
            raise
        except Exception as exc:  # OSError from sd_bus_open_system; pystemd's own hierarchy
            raise SystemdError(
                f"cannot connect to the systemd system bus: {exc}",
                hint="run inside a host booted with systemd or `oci-systemd sandbox exec NAME ...`",
            ) from exc

    def _py(self) -> Any:
        """pystemd's bus, connected on first use."""
        if self._pybus is None:
            bus = _dbuslib().DBus()
            try:
                bus.open()
            except Exception as exc:  # pystemd raises its own hierarchy
                raise SystemdError(
                    f"cannot connect to the systemd system bus: {exc}",
                    hint="run inside a host booted with systemd or `oci-systemd sandbox exec NAME ...`",
                ) from exc
            self._pybus = bus
        return self._pybus

    def close(self) -> None:
        if self._sd is not None:
            self._sd.close()
        if self._pybus is not None:
            self._pybus.close()

    def __enter__(self) -> Systemd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw calls (pystemd) -------------------------------------------------------------

    def _call(
        self,
        method: str,
        args: list[tuple[int, Any]],
        *,
        path: bytes = PATH,
        interface: bytes = MANAGER,
        what: str | None = None,
    ) -> Any:
        bus = self._py()
        try:
            reply = bus.call_method(DEST, path, interface, method.encode(), args)
        except Exception as exc:
            raise _dbus_error(exc, what or method) from exc
        return reply.body

    def _get(self, path: bytes, interface: bytes, prop: str, signature: str) -> Any:
        bus = self._py()
        try:
            return bus.get_property(DEST, path, interface, prop.encode(), signature.encode())
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

        bus = self._py()
        self._job_callback = on_job_removed
        bus.match_signal(DEST, PATH, MANAGER, b"JobRemoved", on_job_removed)
        self._subscribed = True

    def _subscribe_sd_jobs(self) -> None:
        # The same on the ctypes bus: sd_bus_match_signal waits for AddMatch's reply, so
        # the match is in place before the call that enqueues the job.
        if self._sd_job_callback is None and self._sd is not None:
            self._sd_job_callback = self._sd.subscribe_jobs(self._jobs)

    def _wait_job(self, job: str, unit: str, timeout: float = JOB_TIMEOUT_S, *, fast: bool = False) -> str:
        """Wait for JobRemoved of `job`: on the ctypes bus with `fast`, else on pystemd's."""
        bus: Any = self._sd if fast else self._py()
        deadline = time.monotonic() + timeout
        while job not in self._jobs:
            bus.process()
            if job in self._jobs:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemdError(f"timed out waiting for systemd job {job} on {unit}")
            bus.wait(int(min(left, 1.0) * 1_000_000))
        return self._jobs.pop(job)

    # -- units -----------------------------------------------------------------------

    def start_transient_scope(self, name: str, properties: Sequence[UnitProperty]) -> None:
        """StartTransientUnit(name, "fail", props) and wait until its job is done.

        A unit of that name left failed or inactive (an OOM-killed scope, say) would
        make systemd answer "Unit ... already exists": reset it and try once more.
        """
        what = f"start scope {name}"
        if self._sd is None:
            self._subscribe_jobs()
            args = [
                (ord("s"), name.encode()),
                (ord("s"), b"fail"),
                *_encode_properties(properties),
                (ord("a"), b"(sa(sv))"),
                (-1, None),
            ]

            def start() -> str:
                return _text(self._call("StartTransientUnit", args, what=what))

        else:
            self._subscribe_sd_jobs()
            sd = self._sd

            def start() -> str:
                reply = sd.call_with_properties(
                    b"StartTransientUnit",
                    [("s", name), ("s", "fail")],
                    properties,
                    [("a(sa(sv))", [])],  # no auxiliary units
                    what,
                )
                return sd.read_o(reply).decode()

        try:
            job = start()
        except PropertyEncodingError:
            raise  # ours, found before sending: not systemd refusing a property
        except SystemdError as exc:
            if exc.dbus_name == "org.freedesktop.systemd1.UnitExists" and self._reset_if_dead(name):
                job = start()
            else:
                raise _property_error(exc, properties) from exc
        result = self._wait_job(job, name, fast=self._sd is not None)
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
            if self._sd is not None:
                c_name = self._sd.lib.ct.c_char_p(name.encode())
                return self._sd.call_o(b"GetUnit", c_name, types=b"s", what=f"get unit {name}")
            path = self._call("GetUnit", [(ord("s"), name.encode())], what=f"get unit {name}")
        except NoSuchUnit:
            return None
        return path if isinstance(path, bytes) else str(path).encode()

    def active_state(self, name: str) -> str | None:
        """ActiveState of a loaded unit, or None when systemd does not know it."""
        path = self.unit_path(name)
        if path is None:
            return None
        if self._sd is not None:
            ok, value = self._sd.get(path, UNIT, "ActiveState", "get ActiveState")
            if ok:
                return _text(value)
        return _text(self._get(path, UNIT, "ActiveState", "s"))

    def unit_properties(self, name: str, interface: str, names: Iterable[str]) -> dict[str, Any]:
        path = self.unit_path(name)
        if path is None:
            raise NoSuchUnit(f"unit {name} is not loaded", dbus_name="org.freedesktop.systemd1.NoSuchUnit")
        wanted = set(names)
        if self._sd is not None and len(wanted) <= 4:
            # A few properties of basic types: one Get each. Anything else (a container
            # type, an unknown property, which GetAll would leave out) goes to GetAll.
            out: dict[str, Any] = {}
            try:
                for prop in sorted(wanted):
                    ok, value = self._sd.get(path, interface.encode(), prop, f"get properties of {name}")
                    if not ok:
                        break
                    out[prop] = value
                else:
                    return out
            except NoSuchUnit:
                raise
            except SystemdError:
                pass  # GetAll decides, with its own error if there is one
        try:
            reply = self._py().call_method(DEST, path, PROPS, b"GetAll", [(ord("s"), interface.encode())])
        except Exception as exc:
            raise _dbus_error(exc, f"get properties of {name}") from exc
        body = reply.body if isinstance(reply.body, dict) else dict(reply.body or [])
        return {_text(k): v for k, v in body.items() if _text(k) in wanted}

    def kill_unit(self, name: str, signal: int, *, who: str = "all") -> None:
        if self._sd is not None:
            ct = self._sd.lib.ct
            reply = self._sd.call(
                PATH,
                MANAGER,
                b"KillUnit",
                f"kill {name}",
                b"ssi",
                ct.c_char_p(name.encode()),
                ct.c_char_p(who.encode()),
                ct.c_int32(signal),
            )
            self._sd.unref(reply)
            return
        self._call(
            "KillUnit",
            [(ord("s"), name.encode()), (ord("s"), who.encode()), (ord("i"), signal)],
            what=f"kill {name}",
        )

    def stop_unit(self, name: str, *, wait: bool = True) -> None:
        if self._sd is not None:
            self._subscribe_sd_jobs()
            ct = self._sd.lib.ct
            try:
                job = self._sd.call_o(
                    b"StopUnit",
                    ct.c_char_p(name.encode()),
                    ct.c_char_p(b"replace"),
                    types=b"ss",
                    what=f"stop {name}",
                ).decode()
            except NoSuchUnit:
                return
            if wait:
                self._wait_job(job, name, fast=True)
            return
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
            if self._sd is not None:
                self._sd.call_s(b"ResetFailedUnit", name, what=f"reset {name}")
            else:
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
        what = f"set properties of {name}"
        try:
            if self._sd is not None:
                reply = self._sd.call_with_properties(
                    b"SetUnitProperties", [("s", name), ("b", runtime)], properties, [], what
                )
                self._sd.unref(reply)
            else:
                args = [(ord("s"), name.encode()), (ord("b"), runtime), *_encode_properties(properties)]
                self._call("SetUnitProperties", args, what=what)
        except PropertyEncodingError:
            raise
        except SystemdError as exc:
            raise _property_error(exc, properties) from exc

    def freeze_unit(self, name: str) -> None:
        if self._sd is not None:
            self._sd.call_s(b"FreezeUnit", name, what=f"freeze {name}")
        else:
            self._call("FreezeUnit", [(ord("s"), name.encode())], what=f"freeze {name}")

    def thaw_unit(self, name: str) -> None:
        if self._sd is not None:
            self._sd.call_s(b"ThawUnit", name, what=f"thaw {name}")
        else:
            self._call("ThawUnit", [(ord("s"), name.encode())], what=f"thaw {name}")


def _property_error(exc: SystemdError, properties: Sequence[UnitProperty]) -> SystemdError:
    """Name the property systemd refused, so the user knows what to drop."""
    text = exc.message
    for name, _sig, _value in properties:
        if name in text:
            return UnsupportedPropertyError(name, text)
    return exc


def connect() -> Systemd:
    """A connection for `with connect() as sd:` (a `Systemd` is its own context manager,
    closed on exit; no contextlib, which costs ~1 ms to import)."""
    return Systemd()


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
