# SPDX-License-Identifier: Apache-2.0
"""Throw-away local users with their own systemd manager in the sandbox, for rootless tests.

`useradd` gives each one a home it never gets (-M, /nonexistent) and, as login.defs says,
ranges in /etc/subuid and /etc/subgid; `userdel` takes them back. The user's manager
(`user@UID.service`) runs inside the sandbox only: `sandbox_users.start_user()`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from oci_systemd.devtools import sandbox_users
from oci_systemd.devtools.sandbox import Sandbox
from oci_systemd.devtools.sandbox_users import UserSession

PREFIX = "ocirl-"


def subids(name: str, path: str) -> list[tuple[int, int]]:
    """The user's (start, count) ranges in /etc/subuid or /etc/subgid."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            owner, _, rest = line.strip().partition(":")
            start, _, count = rest.partition(":")
            if owner == name:
                out.append((int(start), int(count)))
    return out


def pids_of(uid: int) -> list[int]:
    """Live processes whose real uid is `uid` (this user exists only for the test that made it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line
            )
            if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith(("Z", "X")):
                found.append(int(entry.name))
    return found


def _kill_leftovers(uid: int, timeout: float = 10.0) -> None:
    """What outlives the user's manager (rootless podman's pause process, say), by pid: userdel
    refuses a user who still runs processes."""
    deadline = time.monotonic() + timeout
    while (pids := pids_of(uid)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


@contextlib.contextmanager
def throwaway_user(sb: Sandbox) -> Iterator[UserSession]:
    """A new user with its manager running in `sb`; stopped and deleted afterwards."""
    name = f"{PREFIX}{secrets.token_hex(4)}"
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", name], check=True)
    uid = sandbox_users.lookup_user(name).pw_uid
    try:
        yield sandbox_users.start_user(sb, name)
    finally:
        with contextlib.suppress(Exception):
            sandbox_users.stop_user(sb, name)
        _kill_leftovers(uid)
        subprocess.run(["userdel", name], check=False, capture_output=True)
