# SPDX-License-Identifier: Apache-2.0
"""Network devices for a container's network namespace, through pyroute2 (runtime side).

`linux.netDevices` (runtime-spec 1.2) moves a host interface into the container's
network namespace, renamed as asked. The idler never imports this: it brings `lo` up
itself with one ioctl, which needs no library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oci_systemd.errors import OciSystemdError


def move_devices(init_pid: int, devices: Mapping[str, Mapping[str, Any]]) -> None:
    from pyroute2 import IPRoute, NetNS

    target = f"/proc/{init_pid}/ns/net"
    with IPRoute() as host:
        for host_name, opts in devices.items():
            new_name = str((opts or {}).get("name") or host_name)
            found = host.link_lookup(ifname=host_name)
            if not found:
                raise OciSystemdError(f"linux.netDevices: no network device {host_name!r} on the host")
            try:
                with open(target, "rb") as nsfile:
                    host.link("set", index=found[0], net_ns_fd=nsfile.fileno())
            except Exception as exc:
                raise OciSystemdError(f"move network device {host_name} into the container: {exc}") from exc
            if new_name != host_name:
                _rename_inside(NetNS, target, host_name, new_name)


def _rename_inside(netns_cls: Any, target: str, old: str, new: str) -> None:
    with netns_cls(target) as ns:
        idx = ns.link_lookup(ifname=old)
        if not idx:
            raise OciSystemdError(f"network device {old} vanished after the move")
        ns.link("set", index=idx[0], ifname=new)
