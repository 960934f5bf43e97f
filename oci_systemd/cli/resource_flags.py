# SPDX-License-Identifier: Apache-2.0
"""`update`'s command-line flags and --resources file, as one linux.resources object."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from oci_systemd.errors import OciSystemdError

_SIZE = re.compile(r"^(-?\d+)\s*([kmgtp]?)i?b?$", re.IGNORECASE)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_size(text: str, flag: str) -> int:
    """Bytes from `1024`, `100m`, `1g`, `-1` (runc's RAMInBytes: binary multiples)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise OciSystemdError(f"invalid value for {flag}: {text!r} (expected bytes, e.g. 512m)")
    value = int(match.group(1))
    unit = match.group(2).lower()
    return value * 1024 ** ("kmgtp".index(unit) + 1) if unit else value


def parse_duration(text: str) -> float:
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise OciSystemdError(f"invalid interval {text!r} (expected e.g. 5s or 500ms)")
    factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
    return float(match.group(1)) * factor


def _load(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise OciSystemdError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise OciSystemdError(f"--resources: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise OciSystemdError("--resources: expected a JSON object (linux.resources)")
    return data


def collect(resources_file: str | None, **flags: Any) -> dict[str, Any]:
    res: dict[str, Any] = _load(resources_file) if resources_file else {}
    mem = res.setdefault("memory", {})
    cpu = res.setdefault("cpu", {})
    if flags.get("memory") is not None:
        mem["limit"] = parse_size(flags["memory"], "--memory")
    if flags.get("memory_reservation") is not None:
        mem["reservation"] = parse_size(flags["memory_reservation"], "--memory-reservation")
    if flags.get("memory_swap") is not None:
        mem["swap"] = parse_size(flags["memory_swap"], "--memory-swap")
    for flag, key in (("cpu_share", "shares"), ("cpu_quota", "quota"), ("cpu_period", "period")):
        if flags.get(flag) is not None:
            cpu[key] = flags[flag]
    if flags.get("cpuset_cpus") is not None:
        cpu["cpus"] = flags["cpuset_cpus"]
    if flags.get("cpuset_mems") is not None:
        cpu["mems"] = flags["cpuset_mems"]
    if flags.get("pids_limit") is not None:
        res["pids"] = {"limit": flags["pids_limit"]}
    if flags.get("blkio_weight") is not None:
        res.setdefault("blockIO", {})["weight"] = flags["blkio_weight"]
    for key in ("memory", "cpu"):
        if not res[key]:
            del res[key]
    if not res:
        raise OciSystemdError(
            "update: nothing to change", hint="pass --resources FILE or a flag such as --memory"
        )
    return res
