# SPDX-License-Identifier: Apache-2.0
"""jsonio must read and write exactly what the json package does (for the runtime's values)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oci_systemd import jsonio

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(_values)
def test_dumps_compact_matches_json(value: object) -> None:
    assert jsonio.dumps(value) == json.dumps(value, separators=(",", ":"))


@given(_values)
def test_dumps_indented_matches_json(value: object) -> None:
    assert jsonio.dumps(value, indent=2) == json.dumps(value, indent=2)


@given(_values)
def test_loads_reads_what_json_writes(value: object) -> None:
    assert jsonio.loads(json.dumps(value, indent=1)) == value
    assert jsonio.loads(json.dumps(value).encode()) == value


def test_non_finite_floats_and_keys_as_json_writes_them() -> None:
    value = {1: math.inf, None: -math.inf, False: 0.5, 2.5: (1, 2)}
    assert jsonio.dumps(value) == json.dumps(value, separators=(",", ":"))
    assert math.isnan(jsonio.loads("NaN"))


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": }', "[1,]", '{"a": 1} x', "nul", '"\\x"', "01"])
def test_bad_documents_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError):
        jsonio.loads(text)


def test_bad_document_in_a_fresh_interpreter_is_a_value_error() -> None:
    # The C scanner reports errors through json.decoder, which only this test's process has loaded.
    code = (
        "import sys\nfrom oci_systemd import jsonio\n"
        'try:\n    jsonio.loads(\'{"a": "unterminated\')\n'
        "except ValueError as e:\n    print(type(e).__name__)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=root)
    assert out.stdout.strip() == "JSONDecodeError", out.stderr


def test_unserialisable_values_raise_type_error() -> None:
    with pytest.raises(TypeError, match="set"):
        jsonio.dumps({"a": {1}})
    with pytest.raises(TypeError, match="keys"):
        jsonio.dumps({(1,): 1})


def test_importing_it_pulls_in_neither_json_nor_re() -> None:
    code = "import sys, oci_systemd.jsonio; print(sorted({'json', 're', 'typing'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
