# SPDX-License-Identifier: Apache-2.0
"""libc's own functions (`syscall`, `prctl`) through the C module `_ctypes` alone.

The `ctypes` package (struct, its type zoo, ctypes._endian) costs ~2-5 ms of imports; the
runtime calls these functions on hot paths (create's idler spawn, a foreground run's
subreaper), where they are all it would be imported for. `_ctypes` is CPython's private
module under `ctypes`: its `CFuncPtr((name, dll))` reads `dll._handle`, as ctypes.CDLL's
functions do. The functions return a C int and take ints and bytes (libffi widens ints to
the registers' 64 bits); errno is kept for `errno()` after a call.
"""

import _ctypes
import os


class _Libc:
    _handle = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]  # NULL: our own symbols


class _Function(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO


def function(name: str) -> _ctypes.CFuncPtr:
    """libc's `name`, to call with ints and bytes; returns its C int."""
    return _Function((name, _Libc()))  # type: ignore[arg-type]  # duck-typed like CDLL


def errno() -> int:
    """errno as the last call through `function` left it."""
    return int(_ctypes.get_errno())
