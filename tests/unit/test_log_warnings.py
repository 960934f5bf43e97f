# SPDX-License-Identifier: Apache-2.0
"""A warning about a container reaches the runtime's log and, tagged CONTAINER_ID=, the journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oci_systemd.runtime import journal
from oci_systemd.runtime.log import Logger


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []

    def send(fields: dict[str, Any], **_: Any) -> bool:
        entries.append(dict(fields))
        return True

    monkeypatch.setattr(journal, "send", send)
    return entries


def _logger(target: str, fmt: str = "text") -> Logger:
    logger = Logger()
    logger.configure(target, fmt, debug=False)
    return logger


def test_container_warning_goes_to_the_log_file_and_the_journal(
    tmp_path: Path, sent: list[dict[str, Any]]
) -> None:
    _logger(str(tmp_path / "log")).warning('unknown capability "CAP_X" ignored', container_id="c1")
    assert "CAP_X" in (tmp_path / "log").read_text()
    assert sent == [
        {
            "MESSAGE": 'unknown capability "CAP_X" ignored',
            "PRIORITY": 4,
            "SYSLOG_IDENTIFIER": "oci-systemd",
            "CONTAINER_ID": "c1",
        }
    ]


def test_journald_log_gets_one_entry(sent: list[dict[str, Any]]) -> None:
    _logger("journald:myident").warning("w", container_id="c2")
    assert sent == [{"MESSAGE": "w", "PRIORITY": 4, "SYSLOG_IDENTIFIER": "myident", "CONTAINER_ID": "c2"}]


def test_json_log_keeps_one_object_but_the_journal_hears_it(
    tmp_path: Path, sent: list[dict[str, Any]]
) -> None:
    _logger(str(tmp_path / "log"), "json").warning("w", container_id="c3")
    assert not (tmp_path / "log").exists(), "podman reads a JSON log as one object: errors only"
    assert [e["CONTAINER_ID"] for e in sent] == ["c3"]


def test_plain_warning_does_not_touch_the_journal(tmp_path: Path, sent: list[dict[str, Any]]) -> None:
    _logger(str(tmp_path / "log")).warning("w")
    assert sent == []
