# SPDX-License-Identifier: Apache-2.0
"""`hooks` (config.md "POSIX-platform Hooks"): the stages container/hooks.py runs."""

from __future__ import annotations

from oci_systemd.runtime.spec.fields import I64_MAX, Obj, abs_path, env_entry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# In the order runtime-spec lists them (and `features` reports them).
STAGES: Final = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def check_hooks(raw: object, path: str) -> None:
    o = Obj(raw, path)
    for stage in STAGES:
        o.items(stage, _check_hook)


def _check_hook(raw: object, path: str) -> None:
    o = Obj(raw, path)
    abs_path(o.required("path"), o.at("path"))
    o.strs("args")
    o.items("env", env_entry)
    o.opt_int("timeout", 1, I64_MAX)
