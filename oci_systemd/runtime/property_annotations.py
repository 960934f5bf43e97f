# SPDX-License-Identifier: Apache-2.0
"""`org.systemd.property.<Name>` annotations as systemd unit properties.

runc parses the value with godbus's ParseVariant (the GVariant text format); this accepts the
subset people use: true/false, 'string' or "string", integers and doubles, arrays of those, type
keywords ("uint64 100") and "@t 100" annotations. resources.py puts them after the properties
of `linux.resources`, so a user's explicit annotation wins. Pure; `re` only on first use.
"""

from __future__ import annotations

from oci_systemd.errors import SpecError
from oci_systemd.runtime.spec.fields import U64_MAX

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Final

    from oci_systemd.runtime.systemd import UnitProperty

INFINITY: Final = U64_MAX  # systemd's CGROUP_LIMIT_MAX and USEC_INFINITY
ANNOTATION_PREFIX: Final = "org.systemd.property."


_BASIC_SIGS: Final = frozenset("ybnqiuxtdsog")
_INT_RANGES: Final = {
    "y": (0, 2**8 - 1),
    "n": (-(2**15), 2**15 - 1),
    "q": (0, 2**16 - 1),
    "i": (-(2**31), 2**31 - 1),
    "u": (0, 2**32 - 1),
    "x": (-(2**63), 2**63 - 1),
    "t": (0, 2**64 - 1),
}
_KEYWORDS: Final = {
    "byte": "y",
    "int16": "n",
    "uint16": "q",
    "int32": "i",
    "uint32": "u",
    "int64": "x",
    "uint64": "t",
    "double": "d",
    "objectpath": "o",
    "signature": "g",
}
# Properties whose D-Bus type is "t", so a bare integer is sent as one (godbus would send "i",
# which systemd rejects with "Invalid argument").
_UINT64_PROPERTIES: Final = frozenset(
    {
        "CPUWeight", "StartupCPUWeight", "CPUShares", "StartupCPUShares", "IOWeight", "StartupIOWeight",
        "BlockIOWeight", "StartupBlockIOWeight", "MemoryMin", "MemoryLow", "MemoryHigh", "MemoryMax",
        "MemorySwapMax", "MemoryZSwapMax", "MemoryLimit", "TasksMax", "LogRateLimitBurst",
    }
)  # fmt: skip
# Patterns for annotation values; compiled by `re` on first use (only annotations need them).
_NUMBER_PATTERN: Final = r"[-+]?(0[xX][0-9a-fA-F]+|[0-9]+)"
_FLOAT_PATTERN: Final = r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]+)?"


def annotation_properties(annotations: Mapping[str, str]) -> list[UnitProperty]:
    props: list[UnitProperty] = []
    for key in sorted(annotations):
        if key.startswith(ANNOTATION_PREFIX):
            props.append(parse_property_annotation(key, annotations[key]))
    return props


def parse_property_annotation(key: str, value: str) -> UnitProperty:
    """`org.systemd.property.TimeoutStopSec` = "30" → ("TimeoutStopUSec", "t", 30_000_000)."""
    at = f'annotations["{key}"]'
    name = key.removeprefix(ANNOTATION_PREFIX)
    # runc's checkPropertyName: systemd property names are ASCII letters only.
    if len(name) < 3 or not name.isascii() or not name.isalpha():
        raise SpecError(at, f"invalid systemd property name {name!r} (expected ASCII letters only)")
    try:
        sig, parsed = _Parser(value).parse_value()
        return _coerce(name, sig, parsed, value, at)
    except (ValueError, OverflowError) as e:
        raise SpecError(at, f"cannot parse value {value!r}: {e}") from None
    except RecursionError:
        raise SpecError(at, "value is nested too deeply") from None


def _coerce(name: str, sig: str, value: Any, text: str, at: str) -> UnitProperty:
    # "…Sec" with a lowercase letter before it is a seconds value: systemd's D-Bus API only has
    # the "…USec" variant, so convert as runc does ("TimeoutStopSec=30" → TimeoutStopUSec 30e6).
    stem = name.removesuffix("Sec")
    if stem != name and stem[-1].islower():
        return (stem + "USec", "t", _seconds_to_usec(sig, value, text, at))
    if name.endswith(("USec", "NSec")):
        # systemd declares every time property as "t"; send a non-negative integer as one.
        if sig == "s" and value == "infinity":
            return (name, "t", INFINITY)
        if sig in (*_INT_RANGES, "_int") and value >= 0:
            return (name, "t", _check_int("t", value))
        raise SpecError(at, f"{name} takes a non-negative integer (microseconds), got {text!r}")
    if sig == "_int":
        if name in _UINT64_PROPERTIES or name.startswith("Limit"):
            return (name, "t", _check_int("t", value))
        try:
            return (name, "i", _check_int("i", value))
        except ValueError:
            raise SpecError(
                at, f"{value} does not fit a D-Bus int32; give its type, e.g. 'uint64 {value}'"
            ) from None
    if sig == "a_int":
        return (name, "ai", [_check_int("i", v) for v in value])
    return (name, sig, value)


def _seconds_to_usec(sig: str, value: Any, text: str, at: str) -> int:
    if sig == "s" and value == "infinity":
        return INFINITY
    if sig in (*_INT_RANGES, "_int") and value >= 0:
        return min(int(value) * 1_000_000, INFINITY)
    if sig == "d" and value >= 0:
        return min(int(value * 1_000_000), INFINITY)
    raise SpecError(at, f"expected a non-negative number of seconds, got {text!r}")


def _check_int(sig: str, value: int) -> int:
    lo, hi = _INT_RANGES[sig]
    if not lo <= value <= hi:
        raise ValueError(f"{value} is out of range for D-Bus type {sig!r}")
    return value


class _Parser:
    """A small recursive-descent reader for the GVariant text format subset above.

    Untyped integers come back with the pseudo-signature "_int" (arrays: "a_int") so the caller
    can pick the property's real type, since the text carries none.
    """

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def parse_value(self) -> tuple[str, Any]:
        sig, value = self._value(None)
        self._ws()
        if self.i != len(self.s):
            raise ValueError(f"unexpected {self.s[self.i :]!r}")
        return sig, value

    def _ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def _word(self) -> str:
        self._ws()
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isalnum() or self.s[self.i] in "_.+-"):
            self.i += 1
        return self.s[start : self.i]

    def _value(self, want: str | None) -> tuple[str, Any]:
        self._ws()
        if self.i >= len(self.s):
            raise ValueError("missing value")
        ch = self.s[self.i]
        if ch == "@":
            self.i += 1
            sig = self._signature()
            return self._value(sig)
        if ch in "'\"":
            return self._typed(want, "s", self._string())
        if ch == "[":
            return self._array(want)
        word = self._word()
        if word in _KEYWORDS:
            return self._value(_KEYWORDS[word])
        if word in ("true", "false"):
            return self._typed(want, "b", word == "true")
        import re

        if re.fullmatch(_NUMBER_PATTERN, word):
            hex_ = word.lstrip("+-")[:2] in ("0x", "0X")
            return self._typed(want, "_int", int(word, 16 if hex_ else 10))
        if re.fullmatch(_FLOAT_PATTERN, word):
            return self._typed(want, "d", float(word))
        raise ValueError(f"unrecognized token {word or self.s[self.i :]!r}")

    def _signature(self) -> str:
        start = self.i
        if self.s.startswith("a", self.i):
            self.i += 1
        if self.i < len(self.s) and self.s[self.i] in _BASIC_SIGS:
            self.i += 1
            return self.s[start : self.i]
        raise ValueError(f"unsupported type annotation {self.s[start - 1 : self.i + 1]!r}")

    def _typed(self, want: str | None, got: str, value: Any) -> tuple[str, Any]:
        if want is None or want == got:
            return got, value
        if got == "_int" and want in _INT_RANGES:
            return want, _check_int(want, value)
        if got == "_int" and want == "d":
            return "d", float(value)
        if got == "s" and want in ("o", "g"):
            return want, value
        raise ValueError(f"a {_describe(got)} cannot be read as D-Bus type {want!r}")

    def _string(self) -> str:
        quote = self.s[self.i]
        self.i += 1
        out: list[str] = []
        while self.i < len(self.s):
            ch = self.s[self.i]
            self.i += 1
            if ch == quote:
                return "".join(out)
            if ch == "\\":
                if self.i >= len(self.s):
                    break
                esc = self.s[self.i]
                self.i += 1
                out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(esc, esc))
            else:
                out.append(ch)
        raise ValueError("unterminated string")

    def _array(self, want: str | None) -> tuple[str, Any]:
        if want is not None and not want.startswith("a"):
            raise ValueError(f"an array cannot be read as D-Bus type {want!r}")
        elem = want[1:] if want else None
        self.i += 1  # "["
        items: list[tuple[str, Any]] = []
        self._ws()
        if self.s.startswith("]", self.i):
            self.i += 1
        else:
            while True:
                items.append(self._value(elem))
                self._ws()
                if self.s.startswith(",", self.i):
                    self.i += 1
                elif self.s.startswith("]", self.i):
                    self.i += 1
                    break
                else:
                    raise ValueError("expected ',' or ']' in array")
        sigs = {s for s, _ in items}
        if len(sigs) > 1:
            raise ValueError("array elements have different types")
        sig = elem or (sigs.pop() if sigs else None)
        if sig is None:
            raise ValueError("the type of an empty array must be given, e.g. '@as []'")
        return "a" + sig, [v for _, v in items]


def _describe(sig: str) -> str:
    return {"_int": "number", "s": "string", "b": "boolean", "d": "double"}.get(sig, sig)
