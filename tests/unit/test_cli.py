# SPDX-License-Identifier: Apache-2.0
"""The command line without root: options, version, spec, errors and the runc JSON log line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import TypedDict

import pytest

from oci_systemd.runtime import spec as spec_model

REPO = Path(__file__).resolve().parents[2]
# The console script with click parsing every command line (no fast path).
CLICK_ONLY = (
    "import sys; from oci_systemd.cli import app, entry; entry.guarded(lambda: app.run_click(sys.argv[1:]))"
)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oci_systemd", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_version_has_runcs_three_lines() -> None:
    out = run("--version")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].startswith("oci-systemd version ")
    assert lines[1].startswith("commit: ")
    assert lines[2] == "spec: 1.2.0"


def test_help_lists_the_runc_commands() -> None:
    out = run("--help")
    assert out.returncode == 0
    for command in (
        "create",
        "start",
        "state",
        "kill",
        "delete",
        "run",
        "exec",
        "list",
        "ps",
        "spec",
        "features",
        "update",
        "pause",
        "resume",
        "events",
        "sandbox",
    ):
        assert f"  {command}" in out.stdout


def test_spec_writes_a_valid_default(tmp_path: Path) -> None:
    assert run("spec", "--bundle", str(tmp_path)).returncode == 0
    conf = json.loads((tmp_path / "config.json").read_text())
    spec_model.parse(conf)
    assert conf["root"]["path"] == "rootfs"
    again = run("spec", "--bundle", str(tmp_path))
    assert again.returncode == 1 and "exists" in again.stderr


def test_spec_rootless(tmp_path: Path) -> None:
    assert run("spec", "--rootless", "--bundle", str(tmp_path)).returncode == 0
    conf = json.loads((tmp_path / "config.json").read_text())
    assert any(ns["type"] == "user" for ns in conf["linux"]["namespaces"])


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_error_writes_exactly_one_log_line(tmp_path: Path, log_format: str) -> None:
    log = tmp_path / "log"
    out = run(
        "--root", str(tmp_path / "root"), "--log", str(log), "--log-format", log_format, "state", "nope"
    )
    assert out.returncode == 1
    assert "container does not exist" in out.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    if log_format == "json":
        entry = json.loads(lines[0])
        assert set(entry) == {"level", "msg", "time"}
        assert entry["level"] == "error" and "container does not exist" in entry["msg"]
        datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
    else:
        assert 'level=error msg="container does not exist: nope"' in lines[0]


@pytest.mark.parametrize("form", [["--log-format=json"], ["--log-format", "json"]])
def test_option_forms(tmp_path: Path, form: list[str]) -> None:
    log = tmp_path / "log"
    out = run(f"--root={tmp_path}", f"--log={log}", *form, "--systemd-cgroup", "delete", "--force", "nope")
    assert out.returncode == 0  # runc: delete --force of a missing container succeeds
    assert not log.exists() or log.read_text() == ""


def test_bad_id_is_refused_before_any_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    out = run("--root", str(root), "create", "--bundle", str(tmp_path), "../escape")
    assert out.returncode == 1 and "invalid container id" in out.stderr
    assert not root.exists()


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"ociVersion": "1.2.0", "process": {"args": 3}}))
    out = run("--root", str(tmp_path / "root"), "create", "--bundle", str(tmp_path), "c1")
    assert out.returncode == 1
    assert "process" in out.stderr
    assert not (tmp_path / "root" / "c1").exists()


def test_missing_bundle(tmp_path: Path) -> None:
    out = run("--root", str(tmp_path / "root"), "create", "--bundle", str(tmp_path / "none"), "c1")
    assert out.returncode == 1 and "no such file or directory" in out.stderr.lower()


def test_usage_errors_exit_2() -> None:
    assert run("state").returncode == 2
    assert run("create", "--no-such-option", "x").returncode == 2
    assert run("frobnicate").returncode == 2


def test_kill_rejects_unknown_signal(tmp_path: Path) -> None:
    out = run("--root", str(tmp_path), "kill", "c1", "NOPE")
    assert out.returncode == 1 and "signal" in out.stderr


def test_features_json() -> None:
    out = run("features")
    assert out.returncode == 0
    feats = json.loads(out.stdout)
    assert feats["ociVersionMax"] == "1.2.0"
    assert "org.systemd.property." in feats["potentiallyUnsafeConfigAnnotations"]
    assert "user" in feats["linux"]["namespaces"]
    assert "SCMP_ACT_NOTIFY" in feats["linux"]["seccomp"]["actions"]  # listenerPath works


# No systemd on the bus these tests see: whatever would ask it fails, and shows.
NO_BUS = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/oci-systemd-test-bus"}


@pytest.mark.parametrize("made", [False, True], ids=["absent-root", "empty-root"])
def test_list_empty(tmp_path: Path, made: bool) -> None:
    """An absent or empty --root lists nothing, in each format, without asking systemd."""
    root = tmp_path / "root"
    if made:
        root.mkdir()
    env = dict(os.environ, **NO_BUS)

    def listing(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "oci_systemd", "--root", str(root), "list", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode == 0 and out.stderr == "", out.stderr
        return out.stdout

    assert json.loads(listing("--format", "json")) == []
    assert listing().split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert listing("-q") == ""


class _Identity(TypedDict, total=False):
    """subprocess.run's arguments for whom the child runs as."""

    user: int
    group: int
    extra_groups: list[int]


def _as_unprivileged_user() -> _Identity:
    """subprocess.run arguments that run the child without root's rights: as nobody when the
    tests run as root; as themselves otherwise (the root is then made unreadable)."""
    return {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}


@pytest.mark.parametrize("command", ["state", "ps"], ids=["fast-path", "click"])
def test_state_without_root_privileges_is_a_clean_error(tmp_path: Path, command: str) -> None:
    """A user who may not read --root gets a clear error (runc: `open ...: permission
    denied`) and a hint, not an internal error with a traceback; on both parsers' paths."""
    who = _as_unprivileged_user()
    probe = [sys.executable, "-c", "import oci_systemd.cli.entry"]
    readable = subprocess.run(probe, cwd=REPO, capture_output=True, **who)
    if readable.returncode != 0:
        pytest.skip("the unprivileged user cannot read this checkout or its interpreter")
    root = tmp_path / "root"
    (root / "c1").mkdir(parents=True)  # a real container: the id is valid, the root exists
    root.chmod(0o700 if os.geteuid() == 0 else 0)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "oci_systemd", "--root", str(root), command, "c1"],
            capture_output=True,
            text=True,
            env=dict(os.environ, **NO_BUS),
            cwd=REPO,
            timeout=60,
            **who,
        )
    finally:
        root.chmod(0o700)
    assert out.returncode == 1
    assert "permission denied" in out.stderr
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr
    assert "hint: " in out.stderr


def test_root_from_environment_on_both_paths(tmp_path: Path) -> None:
    """OCI_SYSTEMD_ROOT is the root when --root is not given, on the fast path and on click's.

    c1 exists only in that root (an empty directory: a create that died, status stopped,
    readable without systemd). The click leg runs app.run_click under the console script's
    guard, so it cannot take the fast path; the fast leg must not import click.
    """
    root = tmp_path / "root"
    (root / "c1").mkdir(parents=True)
    env = dict(os.environ, OCI_SYSTEMD_ROOT=str(root), **NO_BUS)
    legs = {
        "fast": [sys.executable, "-X", "importtime", "-m", "oci_systemd"],
        "click": [sys.executable, "-c", CLICK_ONLY],
    }
    for leg, prefix in legs.items():
        found = subprocess.run([*prefix, "state", "c1"], capture_output=True, text=True, env=env, cwd=REPO)
        assert found.returncode == 0, (leg, found.stderr)
        assert json.loads(found.stdout)["id"] == "c1", leg
        if leg == "fast":
            assert not re.search(r"\|\s*click$", found.stderr, re.M), "the fast leg imported click"
        missing = subprocess.run([*prefix, "state", "c2"], capture_output=True, text=True, env=env, cwd=REPO)
        assert missing.returncode == 1 and "container does not exist: c2" in missing.stderr, leg


@pytest.mark.parametrize(("flag", "message"), [("bogus", "invalid --rootless value 'bogus'"), ("true", "")])
def test_rootless_flag_is_checked_by_create_and_run(tmp_path: Path, flag: str, message: str) -> None:
    """As runc's create and run read --rootless: a bad value fails before anything exists."""
    if os.geteuid() != 0:
        pytest.skip("as root: --rootless=true contradicts who runs it")
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    assert run("spec", "--bundle", str(bundle)).returncode == 0
    root = tmp_path / "state"
    for verb in ("create", "run"):
        out = run("--root", str(root), f"--rootless={flag}", verb, "--bundle", str(bundle), "c1")
        assert out.returncode == 1, out.stderr
        assert (
            message or "--rootless=true: the containers of root live in the system manager"
        ) in out.stderr
        assert not (root / "c1").exists()
