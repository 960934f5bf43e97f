# SPDX-License-Identifier: Apache-2.0
"""Fixtures shared by the unit tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .fake_systemd import FakeSystemd


@pytest.fixture
def fake_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    """A fake systemd Manager (tests/unit/fake_systemd.py) on a private bus, which is also the
    "system bus" of this test (DBUS_SYSTEM_BUS_ADDRESS): `connect()` and
    `connect(fake_systemd.address)` both reach it. No root needed."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip("needs dbus-daemon")
    fake = FakeSystemd.start(tmp_path)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", fake.address)
    try:
        yield fake
    finally:
        fake.stop()
