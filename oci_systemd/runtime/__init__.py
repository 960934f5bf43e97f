# SPDX-License-Identifier: Apache-2.0
"""The runtime side: what runs on the host as `oci-systemd <verb>`.

The verbs, the state store, the systemd manager (D-Bus), the journal, the config validation
and the translation of resources into unit properties. It starts the idler of the container
side (`oci_systemd.container`) and talks to it over the channel; it may import the container
side, never the other way round.
"""
