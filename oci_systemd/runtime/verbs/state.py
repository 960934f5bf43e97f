# SPDX-License-Identifier: Apache-2.0
"""`state`: the OCI state object of one container."""

from __future__ import annotations

from oci_systemd.runtime import status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from oci_systemd.runtime.lifecycle import Runtime


def state(rt: Runtime, cid: str) -> dict[str, Any]:
    with rt.store.locked(cid, shared=True) as record:
        return status.state_json(record, status.status(rt.store, record, rt.manager))
