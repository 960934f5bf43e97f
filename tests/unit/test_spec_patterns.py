# SPDX-License-Identifier: Apache-2.0
"""The spec's str-method checks accept exactly what the regular expressions they replace did."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from oci_systemd.errors import InvalidIdError
from oci_systemd.runtime.spec import document, fields
from oci_systemd.runtime.spec import resources as spec_resources
from oci_systemd.runtime.state import validate_id

_VERSIONISH = st.text(alphabet="0123456789.+-abcXZ\n é", max_size=14).map(lambda s: "1." + s) | st.text(
    max_size=10
)


@given(_VERSIONISH)
@example("1.0.2")
@example("1.2.0-rc.1+dev")
@example("1.")
@example("1.0.")
@example("1.0.2.3")
@example("1.0\n")
def test_version_check_matches_the_regex(version: str) -> None:
    regex = re.fullmatch(r"1\.[0-9]+(\.[0-9]+)?([-+][0-9A-Za-z.+-]*)?", version, re.ASCII)
    assert document.is_v1_version(version) == bool(regex), version


@given(st.text(alphabet="0123456789KMGBb²", max_size=8))
@example("2MB")
@example("02MB")
@example("MB")
def test_hugepage_size_check_matches_the_regex(size: str) -> None:
    assert spec_resources.is_hugepage_size(size) == bool(re.fullmatch(r"[1-9][0-9]*[KMG]B", size)), size


@given(st.text(alphabet="abcXYZ_09+-.\n/é ", max_size=12))
def test_container_id_rule_matches_runcs_regex(cid: str) -> None:
    expected = bool(re.fullmatch(r"[\w+\-.]+", cid, re.ASCII)) and cid not in (".", "..")
    try:
        validate_id(cid)
        accepted = True
    except InvalidIdError:
        accepted = False
    assert accepted == expected, repr(cid)


@given(st.text(alphabet="abZ_09.é-", max_size=6))
def test_key_path_quotes_non_identifiers(key: str) -> None:
    plain = bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key))
    assert (fields.key_path("a", key) == f"a.{key}") == plain
