# SPDX-License-Identifier: Apache-2.0
"""Integration tests run against a real, private systemd booted once per session.

Not root: every test here is skipped (booting needs namespaces, mounts and cgroups).
Root but the sandbox does not boot: the session FAILS; a broken sandbox must not look green.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

# Pytest puts this directory on sys.path (rootdir-relative imports, no __init__.py).
import bundles
import pytest

from oci_systemd.devtools import sandbox as sandboxes
from oci_systemd.devtools.sandbox import Sandbox
from oci_systemd.errors import SandboxError

_HERE = Path(__file__).parent
NOT_ROOT_REASON = "integration tests boot a private systemd: they need root (run scripts/test as root)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason=NOT_ROOT_REASON))


def _down_quietly(name: str) -> None:
    """Teardown that runs from finalizers and atexit alike; a second call finds nothing to do."""
    with contextlib.suppress(SandboxError):
        sandboxes.down(name)


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a CI timeout, a `kill`) stops the run like Ctrl-C, so finalizers and atexit tear down.
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """A freshly booted private systemd, unique to this session, always torn down."""
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT_REASON)
    name = f"pytest-{os.getpid()}-{secrets.token_hex(3)}"
    # Registered before booting: a KeyboardInterrupt mid-boot still stops it.
    atexit.register(_down_quietly, name)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        sb = sandboxes.up(name)
    except SandboxError as exc:
        pytest.fail(f"private systemd did not boot: {exc}\nhint: {exc.hint}", pytrace=False)
    try:
        yield sb
    finally:
        _down_quietly(name)


@pytest.fixture(autouse=True)
def _delete_leftover_containers() -> Iterator[None]:
    """Delete (--force) every container a test started and did not delete itself."""
    yield
    for sb, cid in list(bundles.PENDING):
        bundles.delete_container(sb, cid)
