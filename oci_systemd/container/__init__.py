# SPDX-License-Identifier: Apache-2.0
"""The container side: what runs in the idler, inside the container's namespaces.

The idler is started by the runtime in the container's scope, creates or joins the
namespaces, prepares the rootfs, drops to the container's credentials, capabilities,
no_new_privs and seccomp, waits on the start socket and execs the program.

**Import rule.** Modules of this package import only the standard library, each other and the
two shared leaf modules `oci_systemd.errors` and `oci_systemd.jsonio`; never anything of
`oci_systemd.runtime`, `oci_systemd.cli` or a third-party package. Past pivot_root every
`sys.path` entry names a file of the image, so everything the idler needs is imported before
it enters the rootfs (`idler.forbid_imports`). `tests/unit/test_architecture.py` enforces it.
"""
