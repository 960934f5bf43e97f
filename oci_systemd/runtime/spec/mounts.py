# SPDX-License-Identifier: Apache-2.0
"""`root` and `mounts` (config.md), and the id mappings that mounts and user namespaces share.

Mount options are not checked: any option container/mounts.py has no flag for is passed to the
filesystem as data, which only the kernel can judge.
"""

from __future__ import annotations

from oci_systemd.errors import SpecError
from oci_systemd.runtime.spec.fields import U32_MAX, Obj, container_path


def check_root(raw: object, path: str) -> None:
    o = Obj(raw, path)
    # Relative paths are relative to the bundle and may legitimately leave it ("../rootfs").
    if not o.req_str("path"):
        raise SpecError(o.at("path"), "must not be empty")
    o.opt_bool("readonly")


def check_id_mapping(raw: object, path: str) -> None:
    o = Obj(raw, path)
    container_id = o.req_int("containerID", 0, U32_MAX)
    host_id = o.req_int("hostID", 0, U32_MAX)
    size = o.req_int("size", 1, U32_MAX)
    # The kernel refuses ranges that wrap around the 32-bit id space (uid_map EINVAL).
    if container_id + size - 1 > U32_MAX or host_id + size - 1 > U32_MAX:
        raise SpecError(o.at("size"), "mapping range exceeds the 32-bit id space")


def check_mount(raw: object, path: str) -> None:
    o = Obj(raw, path)
    container_path(o.required("destination"), o.at("destination"))
    o.opt_str("type")
    o.opt_str("source")
    o.strs("options")
    o.items("uidMappings", check_id_mapping)
    o.items("gidMappings", check_id_mapping)
