# SPDX-License-Identifier: Apache-2.0
"""`--version`: runc's three lines (version, commit, spec), shared by the fast path and click."""

from __future__ import annotations

import os

from oci_systemd import OCI_VERSION, __version__


def commit() -> str:
    """The build's commit: data/commit in an installed package, else the source tree's HEAD."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        with open(os.path.join(here, "data", "commit"), encoding="ascii") as f:
            return f.read().strip() or "unknown"
    except OSError:
        pass
    head = os.path.join(os.path.dirname(here), ".git", "HEAD")
    try:
        with open(head, encoding="ascii") as f:
            ref = f.read().strip()
        if ref.startswith("ref: "):
            with open(os.path.join(os.path.dirname(head), ref[5:]), encoding="ascii") as f:
                return f.read().strip()
        return ref
    except OSError:
        return "unknown"


def text() -> str:
    return f"oci-systemd version {__version__}\ncommit: {commit()}\nspec: {OCI_VERSION}"
