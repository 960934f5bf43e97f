# SPDX-License-Identifier: Apache-2.0
"""OCI hooks: run each hook of a stage with the container's state JSON on stdin.

Used by the runtime (createRuntime, poststart, poststop) and by the idler
(createContainer, startContainer), so stdlib only and subprocess imported lazily.
"""

from __future__ import annotations

import os

from oci_systemd import jsonio
from oci_systemd.errors import HookError

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: this runs in the idler, and typing costs ~5 ms
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

STAGES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def run_stage(stage: str, hooks: Mapping[str, Any] | None, state: Mapping[str, Any]) -> None:
    """Run every hook of `stage` in order; the first failure raises HookError."""
    if not hooks:
        return
    entries: Sequence[Mapping[str, Any]] = hooks.get(stage) or ()
    if not entries:
        return
    payload = jsonio.dumps(state).encode()  # json.dumps' compact text, without json's re
    for hook in entries:
        run_hook(stage, hook, payload)


def run_hook(stage: str, hook: Mapping[str, Any], payload: bytes) -> None:
    import subprocess

    path = str(hook["path"])
    args = list(hook.get("args") or [path])
    timeout = hook.get("timeout")
    # As runc (Go's exec.Cmd with Env nil) and crun: a hook without `env` inherits the
    # environment of whoever runs it (the runtime, or the idler, which has the runtime's);
    # an explicit list, even an empty one, is the whole environment.
    env = hook.get("env")
    environ = None if env is None else dict(str(e).split("=", 1) for e in env if "=" in str(e))
    try:
        proc = subprocess.run(
            args,
            executable=path,
            input=payload,
            env=environ,
            capture_output=True,
            timeout=timeout,
            close_fds=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HookError(stage, path, f"timed out after {timeout}s") from None
    except OSError as exc:
        raise HookError(stage, path, os.strerror(exc.errno or 0).lower()) from exc
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip() or proc.stdout.decode(errors="replace").strip()
        status = f"exit status {proc.returncode}" if proc.returncode > 0 else f"signal {-proc.returncode}"
        raise HookError(stage, path, f"{status}{': ' + detail if detail else ''}")
