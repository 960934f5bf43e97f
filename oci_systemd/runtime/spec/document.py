# SPDX-License-Identifier: Apache-2.0
"""Reading `bundle/config.json` (size and file-type checks) and validating the whole document,
with the checks that span its parts (hostname and UTS namespace, mounts and mount namespace)."""

from __future__ import annotations

import os

from oci_systemd import jsonio
from oci_systemd.errors import SpecError
from oci_systemd.runtime.spec.fields import ALNUM, DIGITS, Obj, key_path, trusted, type_name
from oci_systemd.runtime.spec.linux import check_linux, has_namespace
from oci_systemd.runtime.spec.mounts import check_mount, check_root
from oci_systemd.runtime.spec.process import parse_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from oci_systemd.container import config

# A real config.json is a few KB (a large seccomp profile and many mounts: ~100 KB); the
# limit only stops a file that never ends (a symlink to /dev/zero, a huge file) from being
# read whole, and stays well below the channel's 16 MiB per message.
MAX_CONFIG_SIZE = 4 * 1024 * 1024


def is_v1_version(version: str) -> bool:
    """fullmatch of 1\\.[0-9]+(\\.[0-9]+)?([-+][0-9A-Za-z.+-]*)?

    runtime-spec follows semver; we implement 1.x and refuse a future 2.0 rather than misread it."""
    if not version.startswith("1.") or not version.isascii():
        return False
    rest = version[2:]
    cut = min((i for i in (rest.find("-"), rest.find("+")) if i >= 0), default=len(rest))
    core, suffix = rest[:cut], rest[cut + 1 :]
    numbers = core.split(".")
    if not 1 <= len(numbers) <= 2 or not all(n and not n.strip(DIGITS) for n in numbers):
        return False
    return not suffix.strip(ALNUM + ".+-")


def parse(raw: object) -> config.Config:
    """Validate a decoded config.json and return it typed (the same dict, container/config.py's
    view of it); raise SpecError naming the bad field."""
    o = Obj(raw, "")
    version = o.req_str("ociVersion")
    if not is_v1_version(version):
        raise SpecError("ociVersion", f"unsupported version {jsonio.dumps(version)} (expected 1.x)")
    o.check("linux", check_linux)
    cfg: config.Config = trusted(raw)
    linux = cfg.get("linux")
    hostname = o.opt_str("hostname")
    domainname = o.opt_str("domainname")
    if linux is not None and not has_namespace(linux, "uts"):
        # Setting them without a UTS namespace would rename the host (runc refuses too).
        for key, value in (("hostname", hostname), ("domainname", domainname)):
            if value:
                raise SpecError(key, "requires a uts namespace in linux.namespaces")
    _check_uts_sysctls(linux or {}, hostname=hostname, domainname=domainname)
    o.str_map("annotations")
    o.check("root", check_root)
    o.items("mounts", check_mount)
    _check_without_mount_ns(cfg)
    o.check("process", parse_process)
    if o.has("hooks"):  # spec/hooks.py only for a config with hooks (most have none)
        from oci_systemd.runtime.spec.hooks import check_hooks

        o.check("hooks", check_hooks)
    return cfg


def _check_uts_sysctls(linux: config.Linux, *, hostname: str | None, domainname: str | None) -> None:
    """kernel.hostname/kernel.domainname next to the field that sets the same name: which one wins
    would depend on the order we apply them in; refused, as runc refuses kernel.hostname."""
    for key in linux.get("sysctl") or ():
        rel = key if "/" in key else key.replace(".", "/")
        for name, value in (("hostname", hostname), ("domainname", domainname)):
            if rel == f"kernel/{name}" and value is not None:
                raise SpecError(
                    key_path("linux.sysctl", key), f"conflicts with the {name} field (set only one of them)"
                )


def _check_without_mount_ns(cfg: config.Config) -> None:
    """Without a mount namespace of its own the container shares the caller's: every mount made
    for it would be made there, change the caller's view and outlive the container. What needs
    a mount is refused (docs/security.md, "Without a mount namespace")."""
    linux = cfg.get("linux") or {}
    root = cfg.get("root")
    if has_namespace(linux, "mount"):
        return
    problem = "requires a mount namespace in linux.namespaces (it would change the caller's mounts)"
    for field_name, wanted in (
        ("mounts", cfg.get("mounts")),
        ("linux.maskedPaths", linux.get("maskedPaths")),
        ("linux.readonlyPaths", linux.get("readonlyPaths")),
        ("linux.rootfsPropagation", linux.get("rootfsPropagation")),
        ("root.readonly", root is not None and root.get("readonly")),
    ):
        if wanted:
            raise SpecError(field_name, problem)
    if has_namespace(linux, "user"):
        # mknod is refused in a user namespace, and binding the host's nodes needs a mount.
        raise SpecError("linux.namespaces", "a user namespace without a mount namespace cannot provide /dev")


def load(bundle: str | os.PathLike[str]) -> config.Config:
    """Read and validate `bundle/config.json`; the config as container/config.py's view.

    os.path, not pathlib: importing pathlib costs `create` ~3 ms."""
    path = os.path.join(os.fspath(bundle), "config.json")
    text = _read_config(path)
    try:
        raw = jsonio.loads(text)
    except (ValueError, RecursionError):
        raw = _load_with_json(path, text)
    if not isinstance(raw, dict):
        raise SpecError(
            "", f"{os.fspath(path)}: expected a JSON object at the top level, got {type_name(raw)}"
        )
    return parse(raw)


def _read_config(path: str) -> bytes:
    """The file's bytes, if it is a regular file (a symlink to one is followed, as runc does)
    of at most MAX_CONFIG_SIZE. Opened O_PATH first and checked: opening a FIFO would block
    and opening a device can have effects; the checked inode is then reopened for reading."""
    try:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise SpecError("", f"open {path}: {os.strerror(e.errno or 0).lower()}") from None
    try:
        st = os.fstat(pfd)
        if (st.st_mode & 0o170000) != 0o100000:
            raise SpecError("", f"{path}: not a regular file")
        if st.st_size > MAX_CONFIG_SIZE:
            raise SpecError("", f"{path}: larger than {MAX_CONFIG_SIZE // (1024 * 1024)} MiB")
        try:
            fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SpecError("", f"open {path}: {os.strerror(e.errno or 0).lower()}") from None
    finally:
        os.close(pfd)
    with open(fd, "rb") as f:
        text = f.read(MAX_CONFIG_SIZE + 1)  # a file that grows after the check still ends here
    if len(text) > MAX_CONFIG_SIZE:
        raise SpecError("", f"{path}: larger than {MAX_CONFIG_SIZE // (1024 * 1024)} MiB")
    return text


def _load_with_json(path: str, text: bytes) -> Any:
    """Parse again with the json package, for its error messages (line and column) and the
    encodings it detects (UTF-16/32 without BOM); only bad or unusual files get here."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(
            "", f"{os.fspath(path)}: bad JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except (ValueError, RecursionError) as e:
        # UnicodeDecodeError, Python's limit on integer digits, or nesting beyond the stack.
        raise SpecError("", f"{os.fspath(path)}: bad JSON: {e}") from None


def validate_container_id(cid: str) -> None:
    """Refuse ids runc refuses: they become file names, unit names and journal fields.

    One rule for the whole runtime: `state.validate_id`.
    """
    from oci_systemd.runtime.state import validate_id

    validate_id(cid)
