# SPDX-License-Identifier: Apache-2.0
"""docs/architecture.md's module picture is generated from the imports: it cannot drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "import-graph"


def test_the_picture_is_up_to_date() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_picture_shows_a_lazy_import_and_leaves_out_type_checking_ones() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    # verbs/kill.py imports placement inside kill() (lazily): an arrow.
    assert "oci_systemd_runtime_verbs_kill --> oci_systemd_runtime_placement" in text
    # verbs/kill.py imports lifecycle.Runtime only under TYPE_CHECKING: no arrow.
    assert "oci_systemd_runtime_verbs_kill --> oci_systemd_runtime_lifecycle" not in text
