# SPDX-License-Identifier: Apache-2.0
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from oci_systemd.errors import OciSystemdError, SpecError
from oci_systemd.runtime import listen_fds, pid_file
from oci_systemd.runtime.placement import scope_for
from oci_systemd.runtime.systemd import unit_name_escape
from oci_systemd.runtime.verbs import exec as exec_verb
from oci_systemd.runtime.verbs.kill import parse_signal

if TYPE_CHECKING:
    from oci_systemd.container import config


@pytest.mark.parametrize(
    ("text", "num"),
    [
        ("TERM", 15),
        ("SIGTERM", 15),
        ("term", 15),
        ("9", 9),
        ("KILL", 9),
        ("SIGRTMIN+1", signal.SIGRTMIN + 1),
        ("HUP", 1),
        ("SIGUSR1", signal.SIGUSR1),
    ],
)
def test_parse_signal(text: str, num: int) -> None:
    assert parse_signal(text) == num


@pytest.mark.parametrize("text", ["NOPE", "0", "-1", "999", "SIGRTMIN+99", ""])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(OciSystemdError):
        parse_signal(text)


def test_scope_from_cgroups_path() -> None:
    assert scope_for("abc", "machine.slice:libpod:abc") == ("libpod-abc.scope", "machine.slice")
    assert scope_for("abc", "system.slice:containerd:abc") == ("containerd-abc.scope", "system.slice")
    assert scope_for("abc", ":crun:abc") == ("crun-abc.scope", "system.slice")


def test_scope_default_names() -> None:
    assert scope_for("abc", None) == ("oci-systemd-abc.scope", "system.slice")
    # cgroupfs-style paths (podman/containerd with cgroupfs) fall back to the default name.
    assert scope_for("abc", "/libpod_parent/libpod-abc") == ("oci-systemd-abc.scope", "system.slice")
    assert scope_for("a+b", None) == ("oci-systemd-a\\x2bb.scope", "system.slice")


@pytest.mark.parametrize("path", ["a:b", "a:b:c:d", "notaslice:p:n", "system.slice:p:x.slice"])
def test_scope_bad_cgroups_path(path: str) -> None:
    with pytest.raises(SpecError, match="cgroupsPath"):
        scope_for("abc", path)


def test_unit_name_escape() -> None:
    assert unit_name_escape("abc-1_2.3") == "abc-1_2.3"
    assert unit_name_escape(".x") == "\\x2ex"
    assert unit_name_escape("a+b") == "a\\x2bb"


def test_every_signal_name_parses_as_the_signal_module_does() -> None:
    names = [n for n in dir(signal) if n.startswith("SIG") and not n.startswith("SIG_")]
    assert names
    for name in names:
        assert parse_signal(name) == int(getattr(signal, name)), name
        assert parse_signal(name[3:].lower()) == int(getattr(signal, name)), name
    with pytest.raises(OciSystemdError):
        parse_signal("SIG_DFL")


def test_plain_kill_signals_the_init_without_dbus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from oci_systemd.runtime import systemd
    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.state import process_start_time

    def no_bus(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a plain kill must not talk to systemd")

    monkeypatch.setattr(systemd, "Systemd", no_bus)
    monkeypatch.setattr(systemd, "connect", no_bus)
    child = subprocess.Popen(["sleep", "30"])
    try:
        rt = Runtime(str(tmp_path))
        os.close(rt.store.claim("c1"))
        start = process_start_time(child.pid)
        assert start is not None  # the child is alive: its start time is there to read
        rt.store.write(
            "c1", {"id": "c1", "phase": "started", "pid": child.pid, "pid_start": start, "scope": "x.scope"}
        )
        rt.kill("c1", "KILL")
        assert child.wait(timeout=10) == -signal.SIGKILL
        with pytest.raises(OciSystemdError, match="not running"):
            rt.kill("c1", "TERM")
    finally:
        child.kill()
        child.wait()


# -- --pid-file and --preserve-fds (issue 14.7, 14.8) -------------------------------------------


def test_pid_file_replaces_a_planted_symlink_and_never_writes_through_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "pid").symlink_to(victim)
    for pid in range(os.getpid() - 50, os.getpid() + 50):  # the old temporary names
        (tmp_path / f"pid.{pid}.tmp").symlink_to(victim)
    pid_file.write_pid_file(str(tmp_path / "pid"), 1234)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "pid").is_symlink() and (tmp_path / "pid").read_text() == "1234"
    assert not list(tmp_path.glob(".pid.*.tmp")), "temporary file left behind"


_FD_CHECK = """
import os
from oci_systemd.runtime import listen_fds
from oci_systemd.errors import OciSystemdError
os.dup2(0, 3)  # the caller's: open, inheritable; fd 4 is a hole
try:
    listen_fds.check_passed_fds(2)
except OciSystemdError as e:
    print("hole:", e)
assert os.open("/dev/null", os.O_RDONLY) == 4  # the runtime's own: close-on-exec
try:
    listen_fds.check_passed_fds(2)
except OciSystemdError as e:
    print("ours:", e)
os.set_inheritable(4, True)
listen_fds.check_passed_fds(2)
print("passed: ok")
"""


def test_passed_fds_must_be_open_and_the_callers() -> None:
    """In a fresh interpreter, so that only 0-2 are open to begin with."""
    import sys

    root = str(Path(listen_fds.__file__).resolve().parents[2])
    code = f"import sys; sys.path.insert(0, {root!r})\n" + _FD_CHECK
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    assert lines[0].startswith("hole: unable to stat preserved-fd 1 (of 2): fd 4 is not open"), out.stdout
    assert lines[1].startswith("ours: preserved-fd 1 (fd 4) was not passed by the caller"), out.stdout
    assert lines[2] == "passed: ok"


# -- exec's helper: a fork only out of reach of CAP_SYS_PTRACE (CVE-2019-5736) ----------------------


def _caps(*extra: str) -> config.Capabilities:
    names = ["CAP_CHOWN", *extra]
    return {"bounding": list(names), "effective": list(names), "permitted": list(names)}


@pytest.mark.parametrize(
    ("init_caps", "exec_caps", "userns", "fork"),
    [
        (_caps(), _caps(), False, True),
        (_caps("CAP_SYS_PTRACE"), _caps(), False, False),
        (_caps(), _caps("CAP_SYS_PTRACE"), False, False),
        (None, _caps(), False, False),  # no capabilities given: nothing dropped
        (_caps(), None, False, False),
        (_caps("CAP_SYS_PTRACE"), None, True, True),  # caps in its own user namespace only
    ],
)
def test_exec_helper_forks_only_out_of_reach_of_ptrace(
    tmp_path: Path,
    init_caps: config.Capabilities | None,
    exec_caps: config.Capabilities | None,
    userns: bool,
    fork: bool,
) -> None:
    namespaces: list[config.Namespace] = [{"type": "pid"}]
    if userns:
        namespaces.append({"type": "user"})
    created: config.Config = {
        "process": {} if init_caps is None else {"capabilities": init_caps},
        "linux": {"namespaces": namespaces},
    }
    process = {} if exec_caps is None else {"capabilities": exec_caps}
    assert exec_verb._may_fork_exec_helper(created, process, os.fspath(tmp_path)) is fork


def test_an_exec_that_may_ptrace_keeps_later_execs_off_the_fork(tmp_path: Path) -> None:
    created: config.Config = {"process": {"capabilities": _caps()}, "linux": {"namespaces": []}}
    assert exec_verb._may_fork_exec_helper(created, {"capabilities": _caps()}, os.fspath(tmp_path))
    assert not exec_verb._may_fork_exec_helper(
        created, {"capabilities": _caps("CAP_SYS_PTRACE")}, os.fspath(tmp_path)
    )
    assert (tmp_path / exec_verb.PTRACE_EXEC_MARK).stat().st_mode & 0o777 == 0o600
    assert not exec_verb._may_fork_exec_helper(created, {"capabilities": _caps()}, os.fspath(tmp_path))


def test_exec_validates_the_process_whoever_built_it(tmp_path: Path) -> None:
    """Runtime.exec checks its process once, before it looks at the container (no such
    container here: the SpecError names the field first), for `--process` and flags alike."""
    from oci_systemd.runtime.lifecycle import Runtime

    rt = Runtime(str(tmp_path / "root"))
    with pytest.raises(SpecError, match=r"process\.args"):
        rt.exec("c1", {"args": [], "cwd": "/"})
    with pytest.raises(SpecError, match=r"process\.cwd"):
        rt.exec("c1", {"args": ["true"], "cwd": "relative"})
    assert not (tmp_path / "root").exists() or not any((tmp_path / "root").iterdir())
