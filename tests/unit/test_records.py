# SPDX-License-Identifier: Apache-2.0
"""records.record behaves like a frozen dataclass where the spec model relies on it."""

from __future__ import annotations

import pytest

from oci_systemd.runtime.records import FrozenInstanceError, field, record


@record
class Point:
    x: int
    y: int = 0
    tags: dict[str, str] = field(default_factory=dict)


def test_construction_defaults_and_factories() -> None:
    a = Point(1)
    b = Point(x=1, y=0)
    assert a == b and a.y == 0 and a.tags == {}
    assert a.tags is not Point(1).tags
    assert Point(1, 2).y == 2


def test_frozen_and_slots() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.x  # type: ignore[misc]
    assert not hasattr(p, "__dict__")


def test_equality_hash_repr() -> None:
    assert Point(1, 2, {}) != Point(2, 2, {})
    assert Point(1) != (1, 0)
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags={})"

    @record
    class Pair:
        a: int
        b: tuple[int, ...] = ()

    assert hash(Pair(1, (2,))) == hash(Pair(1, (2,)))
    assert len({Pair(1), Pair(1), Pair(2)}) == 2


def test_argument_errors() -> None:
    with pytest.raises(TypeError, match="missing"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected"):
        Point(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes"):
        Point(1, 2, {}, 4)  # type: ignore[call-arg]
