# SPDX-License-Identifier: Apache-2.0
"""The process an `exec` runs: from --process JSON, or the container's process + CLI flags.

This follows runc's exec: flags start from the container's own process (env, cwd, user,
capabilities, rlimits, noNewPrivileges) and override or extend it.
"""

from __future__ import annotations

from oci_systemd import jsonio
from oci_systemd.errors import OciSystemdError, SpecError

TYPE_CHECKING = False  # exec's fast path imports this module: typing for annotations only
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def load_process_file(path: str) -> dict[str, Any]:
    """The `--process` file as JSON; the exec verb validates it (spec.parse_process), as it
    does a process built from flags: once, where every caller of Runtime.exec passes."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = jsonio.loads(f.read())
    except OSError as exc:
        raise OciSystemdError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from exc
    except ValueError as exc:
        raise SpecError("process", f"{path} is not valid JSON: {exc}") from exc
    result: dict[str, Any] = raw
    return result


def from_flags(
    base: dict[str, Any],
    args: Sequence[str],
    *,
    env: Sequence[str] = (),
    cwd: str | None = None,
    user: str | None = None,
    additional_gids: Sequence[int] = (),
    caps: Sequence[str] = (),
    tty: bool = False,
    no_new_privs: bool = False,
) -> dict[str, Any]:
    if not args:
        raise OciSystemdError("exec: no command given", hint="oci-systemd exec ID COMMAND [ARGS...]")
    import copy

    proc = copy.deepcopy(base)
    proc["args"] = list(args)
    proc["terminal"] = tty
    proc.pop("consoleSize", None)
    proc["env"] = _merge_env(list(proc.get("env") or []), env)
    if cwd:
        proc["cwd"] = cwd
    if user:
        proc["user"] = _parse_user(user, proc.get("user") or {})
    if additional_gids:
        proc.setdefault("user", {"uid": 0, "gid": 0})["additionalGids"] = list(additional_gids)
    if caps:
        c = proc.setdefault("capabilities", {})
        for name in caps:
            cap = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
            for kind in ("bounding", "effective", "permitted"):
                c.setdefault(kind, [])
                if cap not in c[kind]:
                    c[kind].append(cap)
            # Ambient needs inheritable; like runc, add it only where inheritable exists.
            if c.get("inheritable") is not None and cap not in c.setdefault("ambient", []):
                c["ambient"].append(cap)
    if no_new_privs:
        proc["noNewPrivileges"] = True
    return proc


def _merge_env(env: list[str], extra: Sequence[str]) -> list[str]:
    for item in extra:
        if "=" not in item:
            raise OciSystemdError(f"exec: --env {item!r} is not KEY=VALUE")
        key = item.split("=", 1)[0] + "="
        env = [e for e in env if not e.startswith(key)] + [item]
    return env


def _parse_user(text: str, current: dict[str, Any]) -> dict[str, Any]:
    uid_s, _, gid_s = text.partition(":")
    try:
        uid = int(uid_s)
        gid = int(gid_s) if gid_s else 0
    except ValueError:
        raise OciSystemdError(f"exec: --user {text!r}: expected UID[:GID] as numbers") from None
    return {**current, "uid": uid, "gid": gid}
