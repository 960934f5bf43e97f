# SPDX-License-Identifier: Apache-2.0
"""The idler's import set is pinned: every module it loads costs each `create` time (it runs
before the runtime can go on) and costs every waiting container memory (benchmarked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# What the idler must never load, with the reason it is costly: json (re: ~3 ms), re,
# typing (~5 ms), enum and the `signal` wrapper (enum, functools, collections: ~4 ms),
# socket (enum, selectors, array: ~3.5 ms), contextlib, collections.
# `struct` is not in the list: ctypes imports it (`from struct import calcsize` in
# ctypes/__init__.py), and linux.py needs ctypes for mount(2), pivot_root(2) and the other
# syscalls os has no binding for. No idler module imports it itself.
FORBIDDEN = {
    "json",
    "re",
    "typing",
    "enum",
    "signal",
    "socket",
    "selectors",
    "array",
    "functools",
    "contextlib",
    "collections",
}

# The idler's launcher (runtime._minimal_python), then what create and exec import and
# preload up to the point where the idler blocks, for a config without hooks (the hooks module
# is imported only for a config with some), seccomp or tty.
_CREATE_PATH = """
import sys
sys.path.insert(0, {root!r})
import oci_systemd.container.idler as idler
from oci_systemd.container import channel, mounts, namespaces, process, protocol
process.preload({{}})
idler._preload_for_after_pivot({{}}, tty_wanted=False)
print("\\n".join(sorted(sys.modules)))
"""


def _modules_after(code: str) -> set[str]:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code.format(root=str(root))],
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_the_create_path_imports_none_of_the_costly_modules() -> None:
    loaded = _modules_after(_CREATE_PATH)
    assert {
        "oci_systemd.container.idler",
        "oci_systemd.container.protocol",
        "oci_systemd.container.mounts",
    } <= loaded
    assert sorted(FORBIDDEN & loaded) == []


def test_seccomp_adds_no_costly_module() -> None:
    code = _CREATE_PATH.replace("process.preload({{}})", "from oci_systemd.container import seccomp")
    loaded = _modules_after(code)
    assert "oci_systemd.container.seccomp" in loaded
    assert sorted(FORBIDDEN & loaded) == []


def test_idmap_adds_no_costly_module() -> None:
    code = _CREATE_PATH.replace("process.preload({{}})", "from oci_systemd.container import idmap")
    loaded = _modules_after(code)
    assert "oci_systemd.container.idmap" in loaded
    assert sorted(FORBIDDEN & loaded) == []


def test_struct_comes_only_from_ctypes() -> None:
    """The one exemption above stays an exemption: without ctypes, no struct."""
    code = (
        "import sys; sys.path.insert(0, {root!r}); import oci_systemd.container.idler; print(*sys.modules)"
    )
    loaded = _modules_after(code)
    assert "ctypes" not in loaded
    assert "struct" not in loaded


def test_nothing_can_be_imported_after_forbid_imports() -> None:
    """Past pivot_root every sys.path entry is the image's (issue 14.2): no import may succeed,
    not even of a built-in module, while what is loaded stays usable."""
    code = (
        "import sys; sys.path.insert(0, {root!r})\n"
        "from oci_systemd import jsonio\nfrom oci_systemd.container import idler\n"
        "idler.forbid_imports()\n"
        "for name in ('json', 'pwd', 'zipfile'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ImportError:\n"
        "        print('refused-' + name)\n"
        "from oci_systemd.container import channel\n"
        "print('loaded-ok' if channel.MAX_MESSAGE and jsonio.loads('[1]') == [1] else 'broken')\n"
    )
    assert _modules_after(code) >= {"refused-json", "refused-pwd", "refused-zipfile", "loaded-ok"}
