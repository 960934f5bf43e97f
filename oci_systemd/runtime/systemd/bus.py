# SPDX-License-Identifier: Apache-2.0
"""One sd-bus connection through ctypes: method calls encoded and decoded by D-Bus signature,
D-Bus errors kept by name, and signal matches served by sd_bus_process/sd_bus_wait.

libsystemd.so.0 is loaded on the first connection, never at import of this module, through
the C module `_ctypes` alone (`_CTypes`: `import ctypes` would cost every D-Bus command
~1-2 ms). Messages are built value by value with functions of fixed arguments
(sd_bus_message_append_basic/append_array/open_container) and read back the same way
(peek_type/read_basic/read_array/enter_container), so no C default promotion of a variadic
argument can go wrong and any signature works: the runtime sends `a(sv)` unit properties and
reads `a(sus)` (GetUnitProcesses) and `a{sv}` (GetAll, PropertiesChanged) replies.

Decoded values: strings, object paths and signatures as str, integers as int, 'b' as bool,
'd' as float, 'ay' as bytes, other arrays as lists, dicts as dicts, structs as tuples, and a
variant as its contents (its signature dropped). Encoded values: see `Bus.append`.
"""

from __future__ import annotations

from oci_systemd.errors import SystemdError
from oci_systemd.runtime.systemd.signature import (
    ARRAY_FIXED,
    FIXED,
    STRINGS,
    PropertyEncodingError,
    array_items,
    fixed_value,
    string_value,
    struct_fields,
    variant_value,
)

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~5 ms per command
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Callable, Sequence
    from typing import Any

    # (name, D-Bus signature, value): "t" -> int, "ay" -> bytes, "a(st)" -> list[tuple[str,
    # int]], ...; the signature is the variant's contents. Built by runtime/resources.py.
    UnitProperty = tuple[str, str, Any]
    # A decoded D-Bus value (module docstring).
    Value = (
        str | bytes | int | float | list["Value"] | tuple["Value", ...] | dict[str | int | float, "Value"]
    )
    SignalHandler = Callable[[list[Value]], None]
    # int (*)(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
    CHandler = Callable[[int | None, int | None, int | None], int]

DEST = "org.freedesktop.systemd1"
NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
_EINTR = 4


class NoSuchUnit(SystemdError):
    """systemd does not know the unit (org.freedesktop.systemd1.NoSuchUnit)."""


def dbus_error(name: str, message: str, what: str) -> SystemdError:
    """A failed call as our exception, its D-Bus error name kept."""
    if name == NO_SUCH_UNIT:
        return NoSuchUnit(f"{what}: {message}", dbus_name=name)
    return SystemdError(f"{what}: {message}", dbus_name=name or None)


def strerror(r: int) -> str:
    import os

    return os.strerror(-r) if r < 0 else f"error {r}"


class _CTypes:
    """The part of ctypes this binding uses, built on the C module `_ctypes` alone.

    The `ctypes` package (its type zoo, struct, types, ctypes._endian) costs ~1-2 ms to import,
    more than all of this binding: every D-Bus command (state, delete, create) would pay it.
    The types here are ctypes' own in all that matters to libffi: subclasses of the same
    `_SimpleCData` with the same `_type_` codes, so values convert and pass the same way
    (a fundamental type as restype or callback argument comes back as a Python value).
    interpreter.py does the same for the idler's exec."""

    def __init__(self) -> None:
        import _ctypes

        def simple(name: str, code: str) -> Any:
            return type(name, (_ctypes._SimpleCData,), {"_type_": code})

        self.c_void_p: type[ctypes.c_void_p] = simple("c_void_p", "P")
        self.c_char: type[ctypes.c_char] = simple("c_char", "c")
        self.c_char_p: type[ctypes.c_char_p] = simple("c_char_p", "z")
        self.c_int: type[ctypes.c_int] = simple("c_int", "i")
        self.c_int32 = self.c_int
        self.c_uint32: type[ctypes.c_uint32] = simple("c_uint", "I")
        self.c_uint8: type[ctypes.c_uint8] = simple("c_ubyte", "B")
        self.c_int16: type[ctypes.c_int16] = simple("c_short", "h")
        self.c_uint16: type[ctypes.c_uint16] = simple("c_ushort", "H")
        self.c_int64: type[ctypes.c_int64] = simple("c_longlong", "q")
        self.c_uint64: type[ctypes.c_uint64] = simple("c_ulonglong", "Q")
        self.c_size_t: type[ctypes.c_size_t] = simple("c_size_t", "L")  # unsigned long on Linux
        self.c_double: type[ctypes.c_double] = simple("c_double", "d")
        self.byref = _ctypes.byref
        self.sizeof = _ctypes.sizeof
        self.POINTER = _ctypes.POINTER
        self.Structure = _ctypes.Structure
        self._CFuncPtr = _ctypes.CFuncPtr
        self._dlopen = _ctypes.dlopen
        self._cdecl = _ctypes.FUNCFLAG_CDECL

    def dll(self, name: str) -> Callable[..., Any]:
        """dlopen `name`; returns declare(symbol, restype, *argtypes) -> the C function
        (AttributeError for a missing symbol, OSError for a missing library, as ctypes.CDLL)."""
        import os

        class Dll:  # what CFuncPtr((symbol, dll)) reads: the dlopen handle
            _handle = self._dlopen(name, os.RTLD_NOW)

        # ctypes.CDLL's _FuncPtr: cdecl, int unless told otherwise
        function = type("Function", (self._CFuncPtr,), {"_flags_": self._cdecl, "_restype_": self.c_int})

        def declare(symbol: str, restype: Any, *argtypes: Any) -> Any:
            fn = function((symbol, Dll()))
            fn.restype = restype
            fn.argtypes = list(argtypes)
            return fn

        return declare

    def CFUNCTYPE(self, restype: Any, *argtypes: Any) -> Any:  # ctypes' name
        """A C function pointer type for Python callbacks (ctypes.CFUNCTYPE)."""
        return type(
            "CFunctionType",
            (self._CFuncPtr,),
            {"_argtypes_": argtypes, "_restype_": restype, "_flags_": self._cdecl},
        )

    def string_at(self, address: int, size: int) -> bytes:
        """`size` bytes at `address` (ctypes.string_at)."""
        return (self.c_char * size).from_address(address).raw


class _Lib:
    """libsystemd.so.0's sd-bus, loaded once per process (`libsystemd()`)."""

    def __init__(self) -> None:
        ct = _CTypes()
        declare = ct.dll("libsystemd.so.0")
        vp = ct.c_void_p
        pvp = ct.POINTER(vp)
        char = ct.c_char
        cstr = ct.c_char_p
        i32 = ct.c_int

        # sd_bus_error
        error = type(
            "Error", (ct.Structure,), {"_fields_": [("name", cstr), ("message", cstr), ("_need_free", i32)]}
        )

        self.ct = ct
        self.Error = error
        self.Handler: Callable[[CHandler], Any] = ct.CFUNCTYPE(i32, vp, vp, vp)
        # Connections.
        self.open_system = declare("sd_bus_open_system", i32, pvp)
        self.new = declare("sd_bus_new", i32, pvp)
        self.set_address = declare("sd_bus_set_address", i32, vp, cstr)
        self.set_bus_client = declare("sd_bus_set_bus_client", i32, vp, i32)
        self.start = declare("sd_bus_start", i32, vp)
        self.flush_close_unref = declare("sd_bus_flush_close_unref", vp, vp)
        self.get_fd = declare("sd_bus_get_fd", i32, vp)
        self.process = declare("sd_bus_process", i32, vp, vp)
        self.wait = declare("sd_bus_wait", i32, vp, ct.c_uint64)
        self.match_signal = declare(
            "sd_bus_match_signal", i32, vp, vp, cstr, cstr, cstr, cstr, self.Handler, vp
        )
        # Calls and errors.
        self.new_method_call = declare(
            "sd_bus_message_new_method_call", i32, vp, pvp, cstr, cstr, cstr, cstr
        )
        self.call = declare("sd_bus_call", i32, vp, vp, ct.c_uint64, ct.POINTER(error), pvp)
        self.message_unref = declare("sd_bus_message_unref", vp, vp)
        self.error_free = declare("sd_bus_error_free", None, ct.POINTER(error))
        # Writing a message.
        self.append_basic = declare("sd_bus_message_append_basic", i32, vp, char, vp)
        self.append_array = declare("sd_bus_message_append_array", i32, vp, char, vp, ct.c_size_t)
        self.open_container = declare("sd_bus_message_open_container", i32, vp, char, cstr)
        self.close_container = declare("sd_bus_message_close_container", i32, vp)
        # Reading one.
        self.peek_type = declare("sd_bus_message_peek_type", i32, vp, ct.c_char_p, ct.POINTER(cstr))
        self.read_basic = declare("sd_bus_message_read_basic", i32, vp, char, vp)
        self.read_array = declare("sd_bus_message_read_array", i32, vp, char, pvp, ct.POINTER(ct.c_size_t))
        self.enter_container = declare("sd_bus_message_enter_container", i32, vp, char, cstr)
        self.exit_container = declare("sd_bus_message_exit_container", i32, vp)


_LIB: _Lib | None = None
_LIB_ERROR: str | None = None


def libsystemd() -> _Lib:
    """The ctypes binding, loaded on first use; SystemdError when libsystemd.so.0 (or a
    symbol of it) is missing. There is nothing to fall back to: every D-Bus binding we could
    use instead (pystemd included) is a wrapper of the same library."""
    global _LIB, _LIB_ERROR
    if _LIB is None and _LIB_ERROR is None:
        try:
            _LIB = _Lib()
        except (OSError, AttributeError) as exc:
            _LIB_ERROR = str(exc)
    if _LIB is None:
        raise SystemdError(
            f"cannot load libsystemd's sd-bus: {_LIB_ERROR}",
            hint="install libsystemd0 (systemd >= 237)",
        )
    return _LIB


class Bus:
    """One sd-bus connection: the system bus, or the bus at `address` (a D-Bus address such
    as `unix:path=/run/dbus/system_bus_socket`)."""

    def __init__(self, address: str | None = None) -> None:
        self.lib = lib = libsystemd()
        ct = lib.ct
        self.bus = ct.c_void_p()
        self._handlers: list[Any] = []  # ctypes callbacks: must live as long as the bus
        self._handler_error: BaseException | None = None
        if address is None:  # honours DBUS_SYSTEM_BUS_ADDRESS, as sd-bus does
            r = lib.open_system(ct.byref(self.bus))
        else:
            r = lib.new(ct.byref(self.bus))
            if r >= 0:
                r = lib.set_address(self.bus, address.encode())
            if r >= 0:
                r = lib.set_bus_client(self.bus, 1)  # say Hello: we want a unique name, matches
            if r >= 0:
                r = lib.start(self.bus)
        if r < 0:
            self.close()
            where = "the systemd system bus" if address is None else f"the D-Bus bus at {address}"
            raise SystemdError(
                f"cannot connect to {where}: {strerror(r)}",
                hint="run inside a host booted with systemd or `oci-systemd sandbox exec NAME ...`",
            )

    def close(self) -> None:
        if self.bus:
            self.lib.flush_close_unref(self.bus)
            self.bus = self.lib.ct.c_void_p()

    # -- method calls --------------------------------------------------------------------

    def call(
        self,
        path: str,
        interface: str,
        member: str,
        args: Sequence[tuple[str, object]] = (),
        *,
        what: str,
        properties: Sequence[UnitProperty] | None = None,
        tail: Sequence[tuple[str, object]] = (),
        destination: str = DEST,
    ) -> list[Value]:
        """Call `member` with `args` ((signature, value) pairs), then `properties` as `a(sv)`
        when given, then `tail`; return the reply's values, decoded.

        PropertyEncodingError when a value does not fit its signature (nothing is sent);
        the D-Bus error, its name kept, when the peer refuses the call.
        """
        lib = self.lib
        ct = lib.ct
        msg = ct.c_void_p()
        r = lib.new_method_call(
            self.bus, ct.byref(msg), destination.encode(), path.encode(), interface.encode(), member.encode()
        )
        if r < 0:
            raise SystemdError(f"{what}: cannot build the D-Bus message: {strerror(r)}")
        try:
            for sig, value in args:
                self.append(msg, sig, value)
            if properties is not None:
                self.append_properties(msg, properties)
            for sig, value in tail:
                self.append(msg, sig, value)
            err = lib.Error()
            reply = ct.c_void_p()
            # Timeout 0: sd-bus's default (25 s).
            r = lib.call(self.bus, msg, 0, ct.byref(err), ct.byref(reply))
            try:
                if r < 0:
                    name = (err.name or b"").decode(errors="replace")
                    message = err.message.decode(errors="replace") if err.message else strerror(r)
                    raise dbus_error(name, message, what)
            finally:
                lib.error_free(ct.byref(err))
        finally:
            lib.message_unref(msg)
        try:
            return self.read_all(reply)
        finally:
            lib.message_unref(reply)

    # -- encoding ----------------------------------------------------------------------

    def append_properties(self, msg: ctypes.c_void_p, properties: Sequence[UnitProperty]) -> None:
        """`a(sv)`: each (name, signature, value) as a struct of its name and a variant."""
        self._open(msg, b"a", b"(sv)")
        for name, sig, value in properties:
            try:
                self._open(msg, b"r", b"sv")
                self._append_basic(msg, "s", name)
                self.append(msg, "v", (sig, value))
                self._close(msg)
            except PropertyEncodingError as exc:
                raise PropertyEncodingError(
                    f"cannot send unit property {name} as D-Bus type {sig!r}: {exc}"
                ) from None
        self._close(msg)

    def append(self, msg: ctypes.c_void_p, sig: str, value: object) -> None:
        """Append `value` as the one complete type `sig`, recursing into containers.

        Strings are str or bytes; integers int (range-checked); 'd' int or float; arrays
        lists or tuples (`ay` also bytes, `a{..}` also a dict); structs and dict entries
        sequences of their fields; a variant ('v') is a (signature, value) pair.
        """
        code = sig[0]
        if code in FIXED or code in STRINGS:
            self._append_basic(msg, code, value)
        elif code == "a":
            self._append_array(msg, sig[1:], value)
        elif code == "v":
            inner, contents = variant_value(value)
            self._open(msg, b"v", inner.encode())
            self.append(msg, inner, contents)
            self._close(msg)
        else:  # "(...)" a struct, "{..}" a dict entry (only ever inside an array)
            fields = struct_fields(sig, value)
            self._open(msg, b"r" if code == "(" else b"e", sig[1:-1].encode())
            for field_sig, field in fields:
                self.append(msg, field_sig, field)
            self._close(msg)

    def _append_array(self, msg: ctypes.c_void_p, elem: str, value: object) -> None:
        ct = self.lib.ct
        if elem in ARRAY_FIXED:
            # One call for the whole array (PIDs, AllowedCPUs' bitmask, ...).
            data: Any
            if elem == "y" and isinstance(value, bytes | bytearray):
                data = bytes(value)
                size = len(data)
            else:
                values = [fixed_value(elem, v) for v in array_items(elem, value)]
                ctype = getattr(ct, FIXED[elem][0])
                data = (ctype * len(values))(*values)
                size = ct.sizeof(data)
            self._check(self.lib.append_array(msg, elem.encode(), data, size), f"a{elem}")
            return
        items = array_items(elem, value)
        self._open(msg, b"a", elem.encode())
        for item in items:
            self.append(msg, elem, item)
        self._close(msg)

    def _append_basic(self, msg: ctypes.c_void_p, code: str, value: object) -> None:
        ct = self.lib.ct
        ref: Any
        if code in STRINGS:
            ref = string_value(code, value)  # sd-bus wants the char* itself, not a pointer to it
        else:
            ref = ct.byref(getattr(ct, FIXED[code][0])(fixed_value(code, value)))
        self._check(self.lib.append_basic(msg, code.encode(), ref), code, value)

    def _open(self, msg: ctypes.c_void_p, kind: bytes, contents: bytes) -> None:
        self._check(self.lib.open_container(msg, kind, contents), contents.decode())

    def _close(self, msg: ctypes.c_void_p) -> None:
        self._check(self.lib.close_container(msg), "a container")

    @staticmethod
    def _check(r: int, sig: str, value: object = None) -> None:
        # sd-bus validates what Python can't cheaply: UTF-8, object paths, signatures.
        if r < 0:
            shown = "" if value is None else f"{value!r} as "
            raise PropertyEncodingError(f"sd-bus refused {shown}D-Bus type {sig!r}: {strerror(r)}")

    # -- decoding ----------------------------------------------------------------------

    def read_all(self, msg: ctypes.c_void_p) -> list[Value]:
        """Every value left in the message, or in the container it is in, read by peeking
        at its type."""
        ct = self.lib.ct
        kind = ct.c_char()
        contents = ct.c_char_p()
        out: list[Value] = []
        while True:
            r = self.lib.peek_type(msg, ct.byref(kind), ct.byref(contents))
            if r == 0:
                return out
            self._read_check(r, "peek")
            out.append(self._read_one(msg, kind.value.decode(), contents.value))

    def _read_one(self, msg: ctypes.c_void_p, code: str, contents: bytes | None) -> Value:
        if code in FIXED or code in STRINGS:
            return self._read_basic(msg, code)
        lib = self.lib
        if code == "a" and contents is not None and contents.decode() in ARRAY_FIXED:
            return self._read_fixed_array(msg, contents.decode())
        self._read_check(lib.enter_container(msg, code.encode(), contents), f"enter {code}")
        items = self.read_all(msg)
        self._read_check(lib.exit_container(msg), f"exit {code}")
        if code == "v":
            return items[0]
        if code == "a":
            if contents is not None and contents.startswith(b"{"):
                return {_key(k): v for k, v in (_pair(entry) for entry in items)}
            return items
        return tuple(items)  # "r" a struct, "e" a dict entry

    def _read_basic(self, msg: ctypes.c_void_p, code: str) -> Value:
        ct = self.lib.ct
        if code in STRINGS:
            text = ct.c_char_p()
            self._read_check(self.lib.read_basic(msg, code.encode(), ct.byref(text)), code)
            return (text.value or b"").decode()
        out = getattr(ct, FIXED[code][0])()
        self._read_check(self.lib.read_basic(msg, code.encode(), ct.byref(out)), code)
        value: int | float = out.value
        return bool(value) if code == "b" else value

    def _read_fixed_array(self, msg: ctypes.c_void_p, elem: str) -> Value:
        """`ay`, `au`, ...: one read of the whole C array."""
        ct = self.lib.ct
        ptr = ct.c_void_p()
        size = ct.c_size_t()
        self._read_check(self.lib.read_array(msg, elem.encode(), ct.byref(ptr), ct.byref(size)), f"a{elem}")
        if not size.value:
            return b"" if elem == "y" else []
        if elem == "y":
            return ct.string_at(ptr.value or 0, size.value)
        ctype = getattr(ct, FIXED[elem][0])
        array = (ctype * (size.value // ct.sizeof(ctype))).from_address(ptr.value or 0)
        return list(array)

    @staticmethod
    def _read_check(r: int, what: str) -> None:
        if r < 0:
            raise SystemdError(f"cannot read a D-Bus message ({what}): {strerror(r)}")

    # -- signals -----------------------------------------------------------------------

    def match_signal(self, path: str, interface: str, member: str, handler: SignalHandler) -> None:
        """Call `handler(values)` for every such signal systemd sends, from `process()`.

        sd_bus_match_signal waits for AddMatch's reply, so the match is in place before the
        next call: subscribe before the call whose signal you wait for (a job's JobRemoved).
        """
        lib = self.lib

        def on_signal(msg: int | None, _userdata: int | None, _error: int | None) -> int:
            try:
                handler(self.read_all(lib.ct.c_void_p(msg)))
            except BaseException as exc:  # ctypes would print and drop it: `process()` raises it
                self._handler_error = exc
            return 0

        callback = lib.Handler(on_signal)
        self._handlers.append(callback)
        r = lib.match_signal(
            self.bus, None, DEST.encode(), path.encode(), interface.encode(), member.encode(), callback, None
        )
        if r < 0:
            raise SystemdError(f"cannot subscribe to {interface}.{member}: {strerror(r)}")

    def process(self) -> None:
        """Dispatch every message that has arrived (signals to their handlers); never blocks."""
        while True:
            r = self.lib.process(self.bus, None)
            if self._handler_error is not None:
                exc, self._handler_error = self._handler_error, None
                raise exc
            if r < 0:
                raise SystemdError(f"D-Bus connection failed: {strerror(r)}")
            if r == 0:
                return

    def wait(self, usec: int) -> None:
        """Block until a message arrives or `usec` pass."""
        r = self.lib.wait(self.bus, usec)
        if r < 0 and r != -_EINTR:
            raise SystemdError(f"D-Bus connection failed: {strerror(r)}")

    def fileno(self) -> int:
        """The connection's socket, to wait on in an event loop (then `process()`)."""
        fd: int = self.lib.get_fd(self.bus)
        if fd < 0:
            raise SystemdError(f"D-Bus connection failed: {strerror(fd)}")
        return fd


def _pair(entry: Value) -> tuple[Value, Value]:
    if not isinstance(entry, tuple) or len(entry) != 2:
        raise SystemdError(f"cannot read a D-Bus message: {entry!r} is not a dict entry")
    return entry[0], entry[1]


def _key(key: Value) -> str | int | float:
    if not isinstance(key, str | int | float):
        raise SystemdError(f"cannot read a D-Bus message: {key!r} is not a dict key")
    return key
