# SPDX-License-Identifier: Apache-2.0
"""The runtime's one way to systemd: D-Bus through libsystemd's sd-bus, loaded with ctypes.

- `manager.py`: `Systemd` (from `connect(address=None)`), the Manager and Unit operations the
  verbs call: start_transient_scope (JobRemoved waited), set_unit_properties, unit_path,
  active_state, unit_properties, kill_unit, stop_unit, reset_failed, freeze_unit, thaw_unit,
  unit_processes and the `watch_unit` signal stream (`events`).
- `bus.py`: `Bus`, the one connection: method calls with arguments encoded and replies
  decoded by D-Bus signature (any type: `a(sv)` properties out, `a(sus)` and `a{sv}` in),
  errors kept by D-Bus name, signal matches dispatched by sd_bus_process/sd_bus_wait.
- `signature.py`: D-Bus signatures split and values checked before they are appended.

Neither pystemd nor dbus-next is imported at run time. Measured against this binding
(docs/performance.md, "D-Bus binding"): a call costs the same through pystemd (the same
libsystemd) and 2-3x through dbus-next, but every command pays the import, ~3 ms here
against ~60 ms and ~100 ms. pystemd could not stand in when libsystemd can't be loaded either:
it links the same library. dbus-next serves the fake systemd of the unit tests
(tests/unit/fake_systemd.py).

No `typing`, `collections.abc` or `contextlib` at run time (~8 ms on every command):
annotations are strings and the typing imports sit behind `TYPE_CHECKING`.
"""

from __future__ import annotations

from oci_systemd.runtime.systemd.bus import Bus as Bus
from oci_systemd.runtime.systemd.bus import NoSuchUnit as NoSuchUnit
from oci_systemd.runtime.systemd.manager import JOB_TIMEOUT_S as JOB_TIMEOUT_S
from oci_systemd.runtime.systemd.manager import Systemd as Systemd
from oci_systemd.runtime.systemd.manager import connect as connect
from oci_systemd.runtime.systemd.manager import unit_name_escape as unit_name_escape
from oci_systemd.runtime.systemd.manager import watch_unit as watch_unit
from oci_systemd.runtime.systemd.signature import PropertyEncodingError as PropertyEncodingError
from oci_systemd.runtime.systemd.signature import split_signature as split_signature

TYPE_CHECKING = False
if TYPE_CHECKING:
    from oci_systemd.runtime.systemd.bus import UnitProperty as UnitProperty
    from oci_systemd.runtime.systemd.bus import Value as Value
    from oci_systemd.runtime.systemd.manager import UnitProcess as UnitProcess
