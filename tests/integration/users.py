# SPDX-License-Identifier: Apache-2.0
"""Throw-away local users with their own systemd manager in the sandbox, for rootless tests.

`useradd` gives each one a home it never gets (-M, /nonexistent) and, as login.defs says,
ranges in /etc/subuid and /etc/subgid; `userdel` takes them back. The user's manager
(`user@UID.service`) runs inside the sandbox only: `sandbox.start_user()`.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from collections.abc import Iterator

from oci_systemd.devtools import sandbox as sandboxes
from oci_systemd.devtools.sandbox import Sandbox, UserSession

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


@contextlib.contextmanager
def throwaway_user(sb: Sandbox) -> Iterator[UserSession]:
    """A new user with its manager running in `sb`; stopped and deleted afterwards."""
    name = f"{PREFIX}{secrets.token_hex(4)}"
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/bin/sh", name], check=True)
    try:
        yield sandboxes.start_user(sb, name)
    finally:
        with contextlib.suppress(Exception):
            sandboxes.stop_user(sb, name)
        subprocess.run(["userdel", name], check=False, capture_output=True)
