# SPDX-License-Identifier: Apache-2.0
"""oci-systemd: an OCI container runtime built around systemd.

Keep this module empty of imports: the idler imports the package on its hot path.
"""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"
