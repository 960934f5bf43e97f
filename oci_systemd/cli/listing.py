# SPDX-License-Identifier: Apache-2.0
"""Output of `list` and `ps`, in runc's table and JSON shapes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

from oci_systemd.errors import OciSystemdError


def render(states: Sequence[dict[str, Any]], *, fmt: str, quiet: bool) -> str:
    if quiet:
        return "".join(f"{s['id']}\n" for s in states)
    if fmt == "json":
        keys = ("ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner", "annotations")
        return json.dumps([{k: s.get(k) for k in keys} for s in states]) + "\n"
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


def render_ps(pids: Sequence[int], *, fmt: str, ps_args: list[str]) -> str:
    if fmt == "json":
        return json.dumps(list(pids)) + "\n"
    args = ps_args or ["-ef"]
    try:
        out = subprocess.run(["ps", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise OciSystemdError(f"ps {' '.join(args)}: {exc}") from exc
    lines = out.splitlines()
    if not lines:
        return ""
    header, body = lines[0], lines[1:]
    try:
        col = header.split().index("PID")
    except ValueError:
        raise OciSystemdError("couldn't find PID field in ps output") from None
    wanted = set(pids)
    kept = [
        ln
        for ln in body
        if len(ln.split()) > col and ln.split()[col].isdigit() and int(ln.split()[col]) in wanted
    ]
    return "\n".join([header, *kept]) + "\n"
