# SPDX-License-Identifier: Apache-2.0
from oci_systemd.cli.entry import main

main()
