# SPDX-License-Identifier: Apache-2.0
"""The container's root filesystem: mounts, /dev, pivot_root, masked and read-only paths, sysctl.

One module per thing owned; this package re-exports what the idler and the other container
modules call, so `from oci_systemd.container import mounts; mounts.prepare_rootfs(...)` works:

- `resolve`: paths inside the rootfs resolved to O_PATH fds (openat2 or an O_NOFOLLOW walk),
  mount(2) through such an fd, bind remounts, propagation changes, the step trace (`resolve.trace`);
- `entries`: one `mounts` entry (bind, idmapped bind, filesystem, tmpfs copy-up) and the bind
  sources, opened with the host's credentials for a user namespace (`SourceOpener`);
- `dev`: the default devices, `linux.devices`, /dev links;
- `masked`: `linux.readonlyPaths` and `linux.maskedPaths`;
- `sysctl`: `linux.sysctl`, checked against the namespaces and written;
- `rootfs`: the sequence: prepare_rootfs → (createContainer hooks) → enter_rootfs → finish_rootfs.

The option tables (`MOUNT_FLAGS`, `PROPAGATION_FLAGS`, `KNOWN_OPTIONS` …) and `parse_options` are
in `oci_systemd.container.mount_options`, outside the package so that the runtime can read them
without the rest (re-exported here).

Every submodule is imported here, so the whole package is loaded when the idler first imports
`mounts`, long before pivot_root (`idler.forbid_imports`). Idler hot path: stdlib (`os`, `errno`,
`_socket`; `stat` for a copy-up), `oci_systemd.container.linux`, `.mount_options`, `.channel`,
`.namespaces` and `oci_systemd.errors`; the config is the raw config.json dict, typed by the
views of `oci_systemd.container.config`.
"""

from __future__ import annotations

from oci_systemd.container.mount_options import (
    COPY_UP_OPTIONS,
    IDMAP_OPTIONS,
    KNOWN_OPTIONS,
    MOUNT_FLAGS,
    PROPAGATION_FLAGS,
    UNSUPPORTED_OPTIONS,
    MountOptions,
    is_bind,
    parse_options,
    wants_idmap,
)
from oci_systemd.container.mounts.dev import (
    DEFAULT_DEVICES,
    DEV_SYMLINKS,
    create_device,
    in_user_namespace,
    needs_dev_setup,
    setup_dev,
)
from oci_systemd.container.mounts.entries import SourceOpener, copy_tree, mount_entry
from oci_systemd.container.mounts.masked import mask_path, readonly_path
from oci_systemd.container.mounts.resolve import (
    host_source,
    mkdest_in_root,
    open_in_root,
    secure_join,
    statvfs_flags,
)
from oci_systemd.container.mounts.rootfs import (
    enter_rootfs,
    finish_rootfs,
    mount_point_of,
    prepare_rootfs,
)
from oci_systemd.container.mounts.sysctl import check_sysctls, sysctl_path, write_sysctls

__all__ = [
    "COPY_UP_OPTIONS",
    "DEFAULT_DEVICES",
    "DEV_SYMLINKS",
    "IDMAP_OPTIONS",
    "KNOWN_OPTIONS",
    "MOUNT_FLAGS",
    "PROPAGATION_FLAGS",
    "UNSUPPORTED_OPTIONS",
    "MountOptions",
    "SourceOpener",
    "check_sysctls",
    "copy_tree",
    "create_device",
    "enter_rootfs",
    "finish_rootfs",
    "host_source",
    "in_user_namespace",
    "is_bind",
    "mask_path",
    "mkdest_in_root",
    "mount_entry",
    "mount_point_of",
    "needs_dev_setup",
    "open_in_root",
    "parse_options",
    "prepare_rootfs",
    "readonly_path",
    "secure_join",
    "setup_dev",
    "statvfs_flags",
    "sysctl_path",
    "wants_idmap",
    "write_sysctls",
]
