# SPDX-License-Identifier: Apache-2.0
"""config.json (OCI runtime-spec 1.2), validated on the way in.

Every problem is a `SpecError` naming the JSON path of the offending field
(`linux.namespaces[2].type`), so a user can find it without reading our code. Unknown fields
are ignored, as runtime-spec requires. Validation builds nothing: `parse()` returns the dict it
was given, typed as container/config.py's `Config`, and that dict is the one model of the
config that resources, the idler plan, namespaces, mounts and process all read. The names an
enum field may take are the tables of the container-side module that implements it
(container/abi.py, container/seccomp.py), so spec accepts exactly what is implemented.

The package is pure apart from `load()` reading `bundle/config.json`, and import-light: the
runtime validates on every `create`. One module per part of the document: `document` (the
file and the whole document), `process`, `mounts` (root, mounts, id mappings), `hooks`, `linux`,
`resources`, `seccomp`, and `fields` (typed access to untrusted JSON).
"""

from __future__ import annotations

from oci_systemd.container.abi import CAPABILITIES, NAMESPACE_TYPES, RLIMITS
from oci_systemd.runtime.spec.document import MAX_CONFIG_SIZE, load, parse, validate_container_id
from oci_systemd.runtime.spec.process import CAPABILITY_SETS, capability_warnings, parse_process
from oci_systemd.runtime.spec.resources import parse_resources

# Capability names in number order (CAPABILITY_NAMES[n] is capability n).
CAPABILITY_NAMES = tuple(CAPABILITIES)

__all__ = [
    "CAPABILITIES", "CAPABILITY_NAMES", "CAPABILITY_SETS", "MAX_CONFIG_SIZE", "NAMESPACE_TYPES", "RLIMITS",
    "capability_warnings", "load", "parse", "parse_process", "parse_resources", "validate_container_id",
]  # fmt: skip
