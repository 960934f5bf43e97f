# SPDX-License-Identifier: Apache-2.0
"""JSON on the hot paths, through the C accelerator `_json` without the `json` package.

`import json` costs ~2.5 ms, and with it `re` (json.decoder and json.encoder compile
regexes at import) another ~4 ms: together a fifth of a `state` call. This module builds
the same text `json.dumps` does for the values the runtime writes (dict, list, tuple, str,
int, float, bool, None; ASCII-escaped like `ensure_ascii=True`), and parses with the same C
scanner `json.loads` uses. The unit tests compare both against the json package.

Errors: `loads` raises ValueError (json.JSONDecodeError for what the C scanner reports
itself), `dumps` raises TypeError for a value JSON cannot hold, as json does.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing costs ~6 ms at import: annotations only
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Context:
    """What `_json.make_scanner` reads from a json.JSONDecoder: the defaults of json.loads."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # duck-typed like JSONDecoder
_quote = _json.encode_basestring_ascii


def loads(text: str | bytes) -> Any:
    """Parse one JSON document (str or UTF-8 bytes), like json.loads."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    except SystemError:
        # The scanner builds its JSONDecodeError from json.decoder in sys.modules and, when
        # that was never imported, fails without one. Bad input only: let json explain,
        # unless the stdlib is out of reach (the idler after pivot_root).
        try:
            import json
        except ImportError:
            raise ValueError("invalid JSON") from None
        return json.loads(text)
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    """The text of json.dumps: with `separators=(",", ":")` when indent is None, and
    json's `indent=N` layout ("," and ": ") otherwise."""
    parts: list[str] = []
    _encode(value, parts, indent, 0)
    return "".join(parts)


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _encode(value: Any, out: list[str], indent: int | None, level: int) -> None:
    if isinstance(value, str):
        out.append(_quote(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, dict):
        _encode_dict(value, out, indent, level)
    elif isinstance(value, list | tuple):
        _encode_list(value, out, indent, level)
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _newline(indent: int | None, level: int) -> str:
    return "" if indent is None else "\n" + " " * (indent * level)


def _encode_list(value: list[Any] | tuple[Any, ...], out: list[str], indent: int | None, level: int) -> None:
    if not value:
        out.append("[]")
        return
    inner = _newline(indent, level + 1)
    out.append("[")
    for i, item in enumerate(value):
        out.append(("," if i else "") + inner)
        _encode(item, out, indent, level + 1)
    out.append(_newline(indent, level) + "]")


def _encode_dict(value: dict[Any, Any], out: list[str], indent: int | None, level: int) -> None:
    if not value:
        out.append("{}")
        return
    inner = _newline(indent, level + 1)
    colon = ":" if indent is None else ": "
    out.append("{")
    for i, (key, item) in enumerate(value.items()):
        out.append(("," if i else "") + inner + _quote(_key(key)) + colon)
        _encode(item, out, indent, level + 1)
    out.append(_newline(indent, level) + "}")


def _key(key: Any) -> str:
    """Keys as json.dumps converts them (str, numbers, bool, None)."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return _float(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
