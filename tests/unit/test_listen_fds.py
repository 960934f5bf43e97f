# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import logging
import os

import pytest

from oci_systemd.runtime import listen_fds
from oci_systemd.runtime.listen_fds import ListenFds, container_env, inherited_fds, unset_in_environ


def test_ours() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:https"}
    result = inherited_fds(env)
    assert result == ListenFds(2, ("http", "https"))
    count, names = result
    assert (count, names) == (2, ("http", "https"))
    assert list(result.fds) == [3, 4]


def test_explicit_pid() -> None:
    assert inherited_fds({"LISTEN_PID": "42", "LISTEN_FDS": "1"}, pid=42) == ListenFds(1, ("unknown",))


def test_other_pid_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert inherited_fds({"LISTEN_PID": "42", "LISTEN_FDS": "1"}, pid=43) == listen_fds.NONE
    assert caplog.records == []


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LISTEN_PID": "42"},
        {"LISTEN_FDS": "1"},
        {"LISTEN_PID": "42", "LISTEN_FDS": "0"},
    ],
)
def test_absent(env: dict[str, str]) -> None:
    assert inherited_fds(env, pid=42) == ListenFds(0, ())


@pytest.mark.parametrize(
    "env",
    [
        {"LISTEN_PID": "abc", "LISTEN_FDS": "1"},
        {"LISTEN_PID": "", "LISTEN_FDS": "1"},
        {"LISTEN_PID": "0", "LISTEN_FDS": "1"},
        {"LISTEN_PID": "-42", "LISTEN_FDS": "1"},
        {"LISTEN_PID": "42", "LISTEN_FDS": "-1"},
        {"LISTEN_PID": "42", "LISTEN_FDS": "x"},
        {"LISTEN_PID": "42", "LISTEN_FDS": " 1"},
        {"LISTEN_PID": "42", "LISTEN_FDS": "\u0661"},  # Arabic-Indic one: isdigit() but not ASCII
        {"LISTEN_PID": "42", "LISTEN_FDS": str(2**31)},
    ],
)
def test_malformed_is_ignored_with_debug_note(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oci_systemd.runtime.listen_fds")
    assert inherited_fds(env, pid=42) == listen_fds.NONE
    assert any("malformed" in r.getMessage() for r in caplog.records)


def test_names_mismatch_falls_back_to_unknown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oci_systemd.runtime.listen_fds")
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "a:b"}
    assert inherited_fds(env, pid=42) == ListenFds(3, ("unknown", "unknown", "unknown"))
    assert caplog.records


def test_empty_names_are_kept() -> None:
    env = {"LISTEN_PID": "42", "LISTEN_FDS": "2", "LISTEN_FDNAMES": ":b"}
    assert inherited_fds(env, pid=42).names == ("", "b")


def test_container_env_sets_variables() -> None:
    env = ["PATH=/bin", "TERM=xterm"]
    assert container_env(env, 2, ["http", "https"]) == [
        "PATH=/bin",
        "TERM=xterm",
        "LISTEN_FDS=2",
        "LISTEN_PID=1",
        "LISTEN_FDNAMES=http:https",
    ]
    assert env == ["PATH=/bin", "TERM=xterm"]  # not modified in place


def test_container_env_replaces_stale_values() -> None:
    env = ["LISTEN_PID=999", "PATH=/bin", "LISTEN_FDS=7", "LISTEN_FDNAMES=old", "LISTEN_FDSX=keep"]
    assert container_env(env, 1, ["sock"], container_pid=5) == [
        "PATH=/bin",
        "LISTEN_FDSX=keep",
        "LISTEN_FDS=1",
        "LISTEN_PID=5",
        "LISTEN_FDNAMES=sock",
    ]


def test_container_env_count_zero_removes() -> None:
    env = ["LISTEN_PID=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=x", "HOME=/"]
    assert container_env(env, 0, []) == ["HOME=/"]


def test_container_env_without_matching_names() -> None:
    assert container_env([], 2, []) == ["LISTEN_FDS=2", "LISTEN_PID=1"]
    assert container_env([], 2, ["only-one"]) == ["LISTEN_FDS=2", "LISTEN_PID=1"]


def test_container_env_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        container_env([], -1, [])
    with pytest.raises(ValueError):
        container_env([], 1, ["a:b"])


def test_round_trip_from_inherited() -> None:
    found = inherited_fds({"LISTEN_PID": "7", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}, pid=7)
    assert container_env(["X=1"], *found) == ["X=1", "LISTEN_FDS=2", "LISTEN_PID=1", "LISTEN_FDNAMES=a:b"]


def test_unset_in_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", "1")
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "x")
    monkeypatch.setenv("LISTEN_OTHER", "keep")
    unset_in_environ()
    assert "LISTEN_PID" not in os.environ
    assert "LISTEN_FDS" not in os.environ
    assert "LISTEN_FDNAMES" not in os.environ
    assert os.environ["LISTEN_OTHER"] == "keep"


def test_unset_in_given_mapping() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1", "A": "b"}
    unset_in_environ(env)
    assert env == {"A": "b"}


def test_module_is_import_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys; before = set(sys.modules); import oci_systemd.runtime.listen_fds, "
        "oci_systemd.runtime.journal, oci_systemd.runtime.sdnotify; new = set(sys.modules) - before; "
        "heavy = {'logging', 'pathlib', 'dataclasses', 'inspect', 'fcntl', 'json', 'subprocess', 'typing'}; "
        "print(sorted(new & heavy))"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"
