# SPDX-License-Identifier: Apache-2.0
"""The command line engines call, declared once (`commands`: plain data, no imports) and read
by two parsers: the fast path (`entry`) for the lifecycle verbs, without importing click, and
the click interface (`app`) for everything else. `entry` imports `app` only lazily, for the
command lines it leaves to click; `app` never imports `entry`."""
