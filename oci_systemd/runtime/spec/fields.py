# SPDX-License-Identifier: Apache-2.0
"""Typed access to untrusted JSON: each check takes the JSON path, so errors can name the field.

A check raises SpecError or returns the value it checked; nothing is copied or converted, so
what spec validation accepted is the very dict the rest of the code reads (container/config.py).
"""

from __future__ import annotations

from oci_systemd import jsonio
from oci_systemd.errors import SpecError

# create imports this module: typing and re (~7 ms) stay out of it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from typing import Any, Final

U16_MAX: Final = 2**16 - 1
U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1
I32_MIN: Final = -(2**31)
I32_MAX: Final = 2**31 - 1
I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1

# Checks below are str methods, not `re` (~4 ms to import): ASCII only, and strip(chars) is
# empty exactly when every character is one of `chars`.
DIGITS: Final = "0123456789"
ALNUM: Final = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def trusted(value: object) -> Any:
    """`value`, validated, for a caller to declare as its container/config.py view (a TypedDict
    is a plain dict at run time; this is the one place the checked JSON becomes typed)."""
    return value


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def key_path(base: str, key: str) -> str:
    # Map keys are user data (annotation names, sysctls) and may contain dots; quote those.
    if key.isascii() and key.isidentifier():  # [A-Za-z_][A-Za-z0-9_]*
        return f"{base}.{key}" if base else key
    return f"{base}[{jsonio.dumps(key)}]"


def as_str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(path, f"expected a string, got {type_name(value)}")
    # A NUL would be truncated by every C API the string ends up in (paths, argv, env).
    if "\0" in value:
        raise SpecError(path, "must not contain a NUL byte")
    return value


def as_int(value: object, path: str, lo: int, hi: int) -> int:
    # bool is an int subclass in Python but not a JSON number; floats are refused like Go's decoder does.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"expected an integer, got {type_name(value)}")
    if not lo <= value <= hi:
        raise SpecError(path, f"{value} is out of range [{lo}, {hi}]")
    return value


def as_bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(path, f"expected a boolean, got {type_name(value)}")
    return value


def as_list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise SpecError(path, f"expected an array, got {type_name(value)}")
    return value


def as_obj(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise SpecError(path, f"expected an object, got {type_name(value)}")
    return value


def abs_path(value: object, path: str) -> str:
    s = as_str(value, path)
    if not s.startswith("/"):
        raise SpecError(path, f"must be an absolute path, got {s!r}")
    return s


def container_path(value: object, path: str) -> str:
    s = abs_path(value, path)
    # Destinations are resolved inside the rootfs anyway; ".." only ever means an escape attempt.
    if ".." in s.split("/"):
        raise SpecError(path, f"must not contain '..' components, got {s!r}")
    return s


def enum(value: object, path: str, allowed: Collection[str], what: str) -> str:
    """`value` if it is a key of `allowed`, the table of the module that implements the field."""
    s = as_str(value, path)
    if s not in allowed:
        raise SpecError(path, f"unknown {what} {jsonio.dumps(s)}")
    return s


def env_entry(value: object, path: str) -> str:
    s = as_str(value, path)
    name, eq, _ = s.partition("=")
    if not eq:
        raise SpecError(path, f"expected KEY=VALUE, got {s!r}")
    if not name:
        raise SpecError(path, "environment variable name must not be empty")
    return s


def cpu_list(value: object, path: str) -> str:
    s = as_str(value, path)
    if s.strip(DIGITS + ", -"):  # [0-9, -]*
        raise SpecError(path, f'expected a CPU list like "0-3,5", got {s!r}')
    return s


class Obj:
    """A JSON object at `path`: getters check type and range and return None for absent keys.

    A JSON null is treated as absent, because Go-based generators emit it for nil pointers.
    """

    __slots__ = ("d", "path")

    def __init__(self, raw: object, path: str) -> None:
        self.d = as_obj(raw, path)
        self.path = path

    def at(self, key: str) -> str:
        return key_path(self.path, key)

    def has(self, key: str) -> bool:
        return self.d.get(key) is not None

    def required(self, key: str) -> object:
        value = self.d.get(key)
        if value is None:
            raise SpecError(self.at(key), "required field missing")
        return value

    def req_str(self, key: str) -> str:
        return as_str(self.required(key), self.at(key))

    def opt_str(self, key: str) -> str | None:
        return as_str(self.d[key], self.at(key)) if self.has(key) else None

    def req_int(self, key: str, lo: int, hi: int) -> int:
        return as_int(self.required(key), self.at(key), lo, hi)

    def opt_int(self, key: str, lo: int, hi: int) -> int | None:
        return as_int(self.d[key], self.at(key), lo, hi) if self.has(key) else None

    def opt_bool(self, key: str) -> bool | None:
        return as_bool(self.d[key], self.at(key)) if self.has(key) else None

    def req_enum(self, key: str, allowed: Collection[str], what: str) -> str:
        return enum(self.required(key), self.at(key), allowed, what)

    def opt_enum(self, key: str, allowed: Collection[str], what: str) -> str | None:
        return enum(self.d[key], self.at(key), allowed, what) if self.has(key) else None

    def check(self, key: str, check: Callable[[object, str], object]) -> None:
        """`check(value, path)` when `key` is present."""
        if self.has(key):
            check(self.d[key], self.at(key))

    def obj(self, key: str) -> Obj | None:
        return Obj(self.d[key], self.at(key)) if self.has(key) else None

    def items(self, key: str, check: Callable[[object, str], object]) -> list[object]:
        """The array at `key` (empty when absent), each item checked with `check(item, path)`."""
        if not self.has(key):
            return []
        base = self.at(key)
        values = as_list(self.d[key], base)
        for i, item in enumerate(values):
            check(item, f"{base}[{i}]")
        return values

    def strs(self, key: str) -> list[object]:
        return self.items(key, as_str)

    def enums(self, key: str, allowed: Collection[str], what: str) -> None:
        self.items(key, lambda v, p: enum(v, p, allowed, what))

    def str_map(self, key: str) -> dict[str, object]:
        return self.obj_map(key, as_str)

    def obj_map(self, key: str, check: Callable[[object, str], object]) -> dict[str, object]:
        sub = self.obj(key)
        if sub is None:
            return {}
        for k, v in sub.d.items():
            if k == "":
                raise SpecError(sub.path, "keys must not be empty")
            if "\0" in k:
                raise SpecError(sub.path, f"key {k!r} must not contain a NUL byte")
            check(v, sub.at(k))
        return sub.d
