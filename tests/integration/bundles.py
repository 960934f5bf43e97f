# SPDX-License-Identifier: Apache-2.0
"""Bundles and runtime calls for integration tests: crun's tests/tests_utils.py in pytest form.

Everything a container needs must be visible inside the sandbox, whose /tmp is a private tmpfs:
files are written through `Sandbox.host_path()` and the runtime is handed the inner path.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

from oci_systemd.devtools.sandbox import Sandbox
from oci_systemd.runtime.default_config import default_config

BUSYBOX = Path("/bin/busybox")
# Inside the sandbox: its private /tmp, gone with the sandbox.
INNER_WORKDIR = "/tmp/oci-systemd-tests"

# Containers started by run_and_get_output() and not deleted yet; conftest deletes them after
# each test, so a failing or detached test never leaves one behind.
PENDING: list[tuple[Sandbox, str]] = []

_rootfs_cache: dict[tuple[str, int], Path] = {}


def base_config() -> dict[str, Any]:
    """The default config.json (`oci-systemd spec`) as a fresh dict, with a non-terminal process
    (tests capture stdio)."""
    # Tests edit it freely, some into shapes config.Config refuses (for the runtime to refuse):
    # as a document before validation it is a dict of anything.
    conf = cast("dict[str, Any]", default_config())
    conf["process"]["terminal"] = False
    return conf


def add_all_namespaces(conf: dict[str, Any], *, netns: bool = True) -> dict[str, Any]:
    kinds = ["pid", "ipc", "uts", "mount", "cgroup", *(["network"] if netns else [])]
    conf["linux"]["namespaces"] = [{"type": kind} for kind in kinds]
    return conf


def merge(dst: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into `dst`: dicts merge, everything else replaces."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge(dst[key], value)
        else:
            dst[key] = copy.deepcopy(value)
    return dst


def build_rootfs(dest: Path) -> Path:
    """A minimal rootfs from Debian's static busybox; applet links are relative, inside the rootfs."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} is missing: apt-get install busybox-static")
    for sub in ("bin", "etc", "proc", "sys", "dev", "root", "usr", "var"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    (dest / "tmp").mkdir(mode=0o1777, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([os.fspath(BUSYBOX), "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    # Programs look in /usr/bin and /sbin as well.
    for alias, target in (("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin")):
        if not (dest / alias).exists():
            (dest / alias).symlink_to(target)
    (dest / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (dest / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return dest


def ensure_rootfs(sandbox: Sandbox) -> Path:
    """The rootfs in the sandbox's /tmp (host path), built once per sandbox, i.e. per session."""
    key = (sandbox.name, sandbox.pid)
    if key not in _rootfs_cache:
        _rootfs_cache[key] = build_rootfs(sandbox.host_path(f"{INNER_WORKDIR}/rootfs"))
    return _rootfs_cache[key]


def make_bundle(
    base_dir: Path,
    config: dict[str, Any] | None = None,
    *,
    rootfs: Path,
    **config_overrides: Any,
) -> Path:
    """Write base_dir/config.json (config, default base_config(), deep-merged with the overrides)
    and a private copy of rootfs next to it; returns base_dir."""
    conf = merge(copy.deepcopy(config) if config is not None else base_config(), config_overrides)
    base_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(rootfs, base_dir / conf["root"]["path"], symlinks=True)
    (base_dir / "config.json").write_text(json.dumps(conf, indent=2) + "\n")
    return base_dir


def runtime_argv() -> list[str]:
    """The runtime under test: $OCI_RUNTIME (split like a shell would) or this venv's oci-systemd."""
    override = os.environ.get("OCI_RUNTIME")
    if override:
        return shlex.split(override)
    script = Path(sys.executable).with_name("oci-systemd")
    if script.exists():
        return [os.fspath(script)]
    return [sys.executable, "-m", "oci_systemd"]


class RuntimeFailedError(subprocess.CalledProcessError):
    """CalledProcessError whose message shows what the runtime printed."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- output ---\n{self.output}"


def new_container_id() -> str:
    return f"test-{secrets.token_hex(6)}"


def run_runtime(sandbox: Sandbox, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """One runtime call inside the sandbox, output captured as text, never raising on status."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("timeout", 60)
    return sandbox.run([*runtime_argv(), *args], text=True, check=False, **kwargs)


def delete_container(sandbox: Sandbox, container_id: str) -> None:
    """`delete --force` and drop its bundle; fine if the container is already gone."""
    run_runtime(sandbox, ["delete", "--force", container_id])
    shutil.rmtree(sandbox.host_path(f"{INNER_WORKDIR}/bundles/{container_id}"), ignore_errors=True)
    if (sandbox, container_id) in PENDING:
        PENDING.remove((sandbox, container_id))


def run_and_get_output(
    sandbox: Sandbox,
    config: dict[str, Any],
    command: list[str] | None = None,
    detach: bool = False,
    *,
    timeout: float = 60,
) -> tuple[str, str]:
    """`oci-systemd run` a fresh container inside the sandbox; returns (stdout + stderr, id).

    `command` replaces process.args. Without `detach` the container is deleted (--force) before
    returning; with it, it is left running and deleted after the test by conftest's finalizer.
    Raises RuntimeFailedError (a CalledProcessError showing the output) when the runtime exits non-zero.
    """
    cid = new_container_id()
    conf = copy.deepcopy(config)
    if command is not None:
        conf["process"]["args"] = list(command)
    bundle = make_bundle(
        sandbox.host_path(f"{INNER_WORKDIR}/bundles/{cid}"), conf, rootfs=ensure_rootfs(sandbox)
    )
    argv = ["run", *(["--detach"] if detach else []), "--bundle", sandbox.inner_path(bundle), cid]
    PENDING.append((sandbox, cid))
    # A file, not a pipe: a detached container keeps its stdio open long after `run` returns.
    out_path = bundle / "output"
    try:
        with out_path.open("w+") as out:
            proc = run_runtime(sandbox, argv, stdout=out, stderr=subprocess.STDOUT, capture_output=False)
            out.seek(0)
            output = out.read()
        if proc.returncode != 0:
            raise RuntimeFailedError(proc.returncode, [*runtime_argv(), *argv], output=output)
        return output, cid
    finally:
        if not detach:
            delete_container(sandbox, cid)
