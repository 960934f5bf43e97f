# SPDX-License-Identifier: Apache-2.0
from oci_systemd.entry import main

main()
