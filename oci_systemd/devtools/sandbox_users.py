# SPDX-License-Identifier: Apache-2.0
"""A local user's own systemd manager (`user@UID.service`) inside a sandbox, for rootless containers.

`start_user` runs it on demand (`oci-systemd sandbox exec NAME --user USER -- CMD`) and
`stop_user` stops it again (`oci-systemd sandbox user-stop NAME USER`). The distribution's
user@.service, user-runtime-dir@.service and user.slice are copied into the sandbox's private
/run/systemd/system, never enabled on the host, with a drop-in that gives user@UID its
XDG_RUNTIME_DIR (no PAM session sets one there). The user's runtime directory and bus are in the
sandbox's private /run.
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from oci_systemd.devtools.sandbox import DIST_UNIT_DIR, Sandbox
from oci_systemd.errors import SandboxError

# What a user's manager needs from the system manager (shared/notes/systemd-sandbox.md).
_USER_UNITS = ("user@.service", "user-runtime-dir@.service", "user.slice")
USER_TIMEOUT = 30.0
# A login's path, for commands run as a user (the caller's PATH may name root's directories).
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class UserSession:
    """A local user whose `user@UID.service` runs in a sandbox: its runtime directory and bus."""

    sandbox: Sandbox
    user: str
    uid: int
    gid: int
    home: str

    @property
    def unit(self) -> str:
        return f"user@{self.uid}.service"

    @property
    def runtime_dir(self) -> str:
        """XDG_RUNTIME_DIR inside the sandbox (its private /run)."""
        return f"/run/user/{self.uid}"

    @property
    def bus_address(self) -> str:
        return f"unix:path={self.runtime_dir}/bus"

    def env(self) -> dict[str, str]:
        """A login's environment for this user: what `systemctl --user` and a rootless runtime
        look for (XDG_RUNTIME_DIR, DBUS_SESSION_BUS_ADDRESS), nothing of the caller's."""
        return {
            "HOME": self.home,
            "USER": self.user,
            "LOGNAME": self.user,
            "PATH": USER_PATH,
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": self.runtime_dir,
            "DBUS_SESSION_BUS_ADDRESS": self.bus_address,
        }

    def argv(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> list[str]:
        """`argv` as this user, for inside the sandbox: setpriv changes uid, gid and groups (the
        capabilities go with uid 0), `env -i` starts from `env` (default: `self.env()`)."""
        values = self.env() if env is None else env
        return [
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--",
            "env", "-i", *(f"{k}={v}" for k, v in values.items()), *argv,
        ]  # fmt: skip

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run() inside the sandbox as this user; `env=` is the whole environment."""
        env = kwargs.pop("env", None)
        return self.sandbox.run(self.argv(argv, env=env), **kwargs)


def lookup_user(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise SandboxError(f"no such user: {user}", hint="create it first (useradd NAME)") from None


def _write_user_units(sb: Sandbox, uid: int) -> None:
    """The user units and a drop-in giving user@UID its XDG_RUNTIME_DIR: without it (no PAM
    session sets one here) the user manager exits at once."""
    unit_dir = sb.host_path("/run/systemd/system")
    for unit in _USER_UNITS:
        if not (unit_dir / unit).exists():
            (unit_dir / unit).write_text((DIST_UNIT_DIR / unit).read_text())
    dropin = unit_dir / f"user@{uid}.service.d"
    dropin.mkdir(exist_ok=True)
    (dropin / "oci-systemd-sandbox.conf").write_text(
        f"[Service]\nEnvironment=XDG_RUNTIME_DIR=/run/user/{uid}\n"
    )


def _systemctl(sb: Sandbox, *args: str) -> None:
    proc = sb.run(
        ["systemctl", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=USER_TIMEOUT, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SandboxError(f"sandbox {sb.name}: systemctl {' '.join(args)} failed: {proc.stderr.strip()}")


def start_user(sb: Sandbox, user: str, *, timeout: float = USER_TIMEOUT) -> UserSession:
    """Run `user@UID.service` for `user` in the sandbox (idempotent) and return once the user's
    manager answers on its bus: `systemctl --user is-system-running` says running/degraded."""
    entry = lookup_user(user)
    if entry.pw_uid == 0:
        raise SandboxError("root has no user manager here", hint="name an unprivileged user")
    session = UserSession(sb, entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
    _write_user_units(sb, entry.pw_uid)
    _systemctl(sb, "daemon-reload")
    _systemctl(sb, "start", session.unit)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = session.run(
            ["systemctl", "--user", "is-system-running"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        if proc.stdout.strip() in ("running", "degraded"):
            return session
        time.sleep(0.05)
    raise SandboxError(f"sandbox {sb.name}: the user manager of {entry.pw_name} did not come up")


def stop_user(sb: Sandbox, user: str) -> None:
    """Stop the user's manager and runtime directory and remove their drop-in (idempotent)."""
    uid = lookup_user(user).pw_uid
    sb.run(
        ["systemctl", "stop", f"user@{uid}.service", f"user-runtime-dir@{uid}.service"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=USER_TIMEOUT, check=False,
    )  # fmt: skip
    shutil.rmtree(sb.host_path(f"/run/systemd/system/user@{uid}.service.d"), ignore_errors=True)
    sb.run(["systemctl", "daemon-reload"], stdin=subprocess.DEVNULL, capture_output=True, check=False)
