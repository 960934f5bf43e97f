# SPDX-License-Identifier: Apache-2.0
"""`state`: the OCI state object of one container."""

from __future__ import annotations

from oci_systemd.runtime import status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.runtime.lifecycle import Runtime
    from oci_systemd.runtime.status import OciState


def state(rt: Runtime, cid: str) -> OciState:
    with rt.store.locked(cid, shared=True) as record:
        return status.state_json(record, status.status(rt.store, record, rt.manager))
