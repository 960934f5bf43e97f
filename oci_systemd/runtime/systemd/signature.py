# SPDX-License-Identifier: Apache-2.0
"""D-Bus signatures and the checks a Python value gets before it is appended as one.

Pure (no ctypes): `bus.py` appends what these functions have checked, because ctypes would
silently wrap an out-of-range integer and a C string would silently end at a NUL byte.
"""

from __future__ import annotations

from oci_systemd.errors import SystemdError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs ~5 ms per command
if TYPE_CHECKING:
    from collections.abc import Iterable


class PropertyEncodingError(SystemdError):
    """A value does not fit its D-Bus signature, or the signature is not valid.

    Found before anything is sent, so it is never taken for systemd refusing a property
    (`UnsupportedPropertyError`); the message names the property when there is one.
    """


# Fixed-size basic types: (ctypes type name, smallest, largest). 'b' travels as a 32-bit
# int (sd-bus's `int` bool), 'h' as the fd number sd-bus dups into the message.
FIXED: dict[str, tuple[str, int, int]] = {
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
STRINGS = frozenset("sog")
# Arrays of these travel as one C array of the element type (sd_bus_message_append_array,
# sd_bus_message_read_array). sd-bus refuses that for 'b' (every value must be checked to
# be 0 or 1) and 'h' (each fd is dup'ed into the message): those go element by element.
ARRAY_FIXED = frozenset("ynqiuxtd")
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
    if code in FIXED or code in STRINGS or code == "v":
        return i + 1
    if code == "a":
        if not sig.startswith("{", i + 1):
            return _type_end(sig, i + 1, depth + 1)
        key = sig[i + 2 : i + 3]
        if not key or (key not in FIXED and key not in STRINGS):
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


def single_type(signature: str) -> str:
    """The signature of one variant's contents: exactly one complete type."""
    if len(split_signature(signature)) != 1:
        raise PropertyEncodingError(
            f"invalid D-Bus signature {signature!r}: a variant holds exactly one complete type"
        )
    return signature


def fixed_value(code: str, value: object) -> int | float:
    """`value` checked against a fixed-size type: ctypes would silently wrap it."""
    if code == "d":
        if isinstance(value, int | float):
            return float(value)
        raise PropertyEncodingError(f"{value!r} is not a number (D-Bus type 'd')")
    if not isinstance(value, int):
        raise PropertyEncodingError(f"{value!r} is not an integer (D-Bus type {code!r})")
    _ctype, lo, hi = FIXED[code]
    if code == "b":
        return 1 if value else 0
    if not lo <= value <= hi:
        raise PropertyEncodingError(f"{value} is out of range for D-Bus type {code!r}")
    return value


def string_value(code: str, value: object) -> bytes:
    """`value` (str or bytes) as the bytes of a C string; sd-bus checks UTF-8 and path syntax."""
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise PropertyEncodingError(f"{value!r} is not a string (D-Bus type {code!r})")
    if b"\0" in value:  # a C string would end there, silently
        raise PropertyEncodingError(f"{value!r} contains a NUL byte (D-Bus type {code!r})")
    return value


def array_items(elem: str, value: object) -> Iterable[object]:
    """The elements of an array value: a list or tuple; for `a{..}` also a dict's items."""
    if elem.startswith("{") and isinstance(value, dict):
        return value.items()
    if isinstance(value, list | tuple):
        return value
    raise PropertyEncodingError(f"{value!r} is not a list (D-Bus type 'a{elem}')")


def variant_value(value: object) -> tuple[str, object]:
    """A variant's (signature, value) pair, its signature checked to be one complete type."""
    if not (isinstance(value, tuple | list) and len(value) == 2 and isinstance(value[0], str)):
        raise PropertyEncodingError(f"{value!r} is not a (signature, value) pair (D-Bus type 'v')")
    return single_type(value[0]), value[1]


def struct_fields(sig: str, value: object) -> list[tuple[str, object]]:
    """A struct's or dict entry's (field signature, field value) pairs; `sig` with its brackets."""
    fields = split_signature(sig[1:-1])
    if not isinstance(value, tuple | list) or len(value) != len(fields):
        raise PropertyEncodingError(f"{value!r} does not have {len(fields)} fields (D-Bus type {sig!r})")
    return list(zip(fields, value, strict=True))
