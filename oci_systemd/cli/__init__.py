# SPDX-License-Identifier: Apache-2.0
"""The command line engines call: the fast path (`entry`) for the lifecycle verbs, parsed
without importing click, and the click interface (`app`) for everything else."""
