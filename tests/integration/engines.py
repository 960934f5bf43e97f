# SPDX-License-Identifier: Apache-2.0
"""Helpers for driving oci-systemd through real engines (podman + conmon, containerd + runc shim).

Everything lives inside the session's private systemd: the engines' state, images, sockets and
configs sit under ENGINES_DIR in the sandbox's private /tmp, so they vanish with the sandbox and
never touch the host's /var/lib/containers, /var/lib/containerd or /run/containerd.

The engines call the runtime through a small wrapper script named `oci-systemd` (podman matches
`runtime_supports_json` against the runtime's basename) that appends its argv, one shell-quoted
line per call, to a log file and then execs the runtime under test (`bundles.runtime_argv()`, so
`OCI_RUNTIME=runc` still works for comparison).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import bundles
import pytest

from oci_systemd.devtools.sandbox import Sandbox

# Inside the sandbox (its private /tmp).
ENGINES_DIR = "/tmp/oci-systemd-engines"
IMAGE = "localhost/busybox:oci-systemd-test"
# Unit globs that must match nothing once a scenario is over (podman's conmon scopes included).
SCOPE_GLOBS = ("libpod-*", "containerd-*", "oci-systemd-*")


def require_binaries(*names: str) -> None:
    """Skip (fail under CI, where scripts/setup must have installed them) when a binary is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed: run scripts/setup (it installs podman, containerd)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def write_runtime_wrapper(sb: Sandbox, inner_dir: str) -> tuple[str, str]:
    """Write `<inner_dir>/bin/oci-systemd`; returns (wrapper path, argv log path), both inner paths."""
    wrapper = f"{inner_dir}/bin/oci-systemd"
    argv_log = f"{inner_dir}/runtime-argv.log"
    target = " ".join(shlex.quote(a) for a in bundles.runtime_argv())
    host = sb.host_path(wrapper)
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(
        "#!/bin/bash\n"
        "# Test wrapper: record the command line an engine sent, then run the runtime under test.\n"
        f"{{ printf '%s' \"$PPID\"; printf ' %q' \"$@\"; printf '\\n'; }} >> {shlex.quote(argv_log)}\n"
        f'exec {target} "$@"\n'
    )
    host.chmod(0o755)
    sb.host_path(argv_log).touch()
    return wrapper, argv_log


def read_argv_log(sb: Sandbox, argv_log: str) -> list[list[str]]:
    """The runtime calls recorded by the wrapper, each as its argv (without the parent pid)."""
    calls = []
    for line in sb.host_path(argv_log).read_text().splitlines():
        if line.strip():
            calls.append(shlex.split(line)[1:])
    return calls


def calls_for(calls: list[list[str]], container_id: str) -> list[list[str]]:
    return [argv for argv in calls if container_id in argv]


def subcommand(argv: Sequence[str]) -> str:
    """The runc subcommand of a recorded call: the first word that is not a global option."""
    takes_value = {"--root", "--log", "--log-format", "--criu", "--rootless"}
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in takes_value:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return arg
    return ""


def format_calls(calls: list[list[str]]) -> str:
    return "\n".join(" ".join(shlex.quote(a) for a in argv) for argv in calls) or "(no runtime calls)"


def busybox_rootfs_tar(sb: Sandbox, inner_dir: str) -> str:
    """A tarball of the busybox rootfs (bundles.build_rootfs) for `podman import`; inner path."""
    rootfs = sb.host_path(f"{inner_dir}/rootfs")
    if not rootfs.exists():
        bundles.build_rootfs(rootfs)
    tar_path = f"{inner_dir}/busybox-rootfs.tar"
    with tarfile.open(sb.host_path(tar_path), "w") as tar:
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name)
    return tar_path


def leftover_scopes(sb: Sandbox) -> list[str]:
    proc = sb.run(
        ["systemctl", "list-units", "--all", "--no-legend", "--plain", *SCOPE_GLOBS],
        capture_output=True,
        text=True,
        timeout=30,
    )
    units = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return [u for u in units if u.endswith(".scope")]


def unit_property(sb: Sandbox, unit: str, prop: str) -> str:
    proc = sb.run(["systemctl", "show", unit, "-p", prop, "--value"], capture_output=True, text=True)
    return str(proc.stdout).strip()


def sandbox_mounts_mentioning(sb: Sandbox, text: str) -> list[str]:
    """Mounts of the sandbox's mount namespace whose line names `text` (a container id)."""
    lines = Path(f"/proc/{sb.pid}/mounts").read_text().splitlines()
    return [line for line in lines if text in line]


def processes_mentioning(sb: Sandbox, text: str) -> list[str]:
    ps = sb.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, timeout=30).stdout
    return [line for line in ps.splitlines() if text in line and "ps -eo" not in line]


def state_entries(sb: Sandbox, inner_root: str) -> list[str]:
    root = sb.host_path(inner_root)
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(0.05)


def assert_no_leftovers(sb: Sandbox, container_id: str, *, runtime_roots: Sequence[str]) -> None:
    """No scope, no runtime state directory, no mount and no process left for the container."""
    wait_for(
        lambda: not [u for u in leftover_scopes(sb) if container_id in u], timeout=10, what="no scope left"
    )
    for root in runtime_roots:
        assert container_id not in state_entries(sb, root), f"state of {container_id} left in {root}"
    assert not sandbox_mounts_mentioning(sb, container_id)
    wait_for(lambda: not processes_mentioning(sb, container_id), timeout=10, what="no process left")


def text(proc: subprocess.CompletedProcess[str]) -> str:
    return f"rc={proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


def dedent(snippet: str) -> str:
    return textwrap.dedent(snippet).lstrip()


def run_inside(
    sb: Sandbox, argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 60, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """A command inside the sandbox with captured text output, never raising on status."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    prefix = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
    return sb.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False, **kw)


# -- podman ----------------------------------------------------------------------------------

PODMAN_DIR = f"{ENGINES_DIR}/podman"

# Written verbatim (with {d} = PODMAN_DIR) and shown in docs/podman.md.
CONTAINERS_CONF = """\
[containers]
# podman's rootful defaults (nofile/nproc 1048576) are above this machine's hard limits, and
# raising a hard limit needs CAP_SYS_RESOURCE: keep the container's limits within them.
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
# The private systemd's cgroup2 has no pids controller: no TasksMax for the scope.
pids_limit = 0
# No network backend is needed (no netavark, CNI plugins or slirp4netns).
netns = "none"
log_driver = "k8s-file"

[engine]
cgroup_manager = "systemd"
runtime = "oci-systemd"
# Matched against the runtime's basename: podman then adds --log-format=json --log <oci-log>.
runtime_supports_json = ["oci-systemd"]
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/tmp"
static_dir = "{d}/storage/libpod"
volume_path = "{d}/storage/volumes"

[engine.runtimes]
oci-systemd = ["{d}/bin/oci-systemd"]

[network]
network_backend = "cni"
# Else podman writes a default network and its lock into the host's /etc/cni/net.d.
network_config_dir = "{d}/cni"
"""

STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{d}/storage"
runroot = "{d}/run"
"""

REGISTRIES_CONF = """\
unqualified-search-registries = []
"""

# podman 4.3 (containers/image) keeps its blob-info cache in /var/lib/containers/cache for root,
# whatever storage.conf says, and no option moves it: run podman in a child mount namespace of the
# sandbox with a tmpfs on /var/lib, so the host's /var/lib/containers is never created or written.
_PRIVATE_VAR_LIB = [
    "unshare", "--mount", "--propagation", "private", "--",
    "sh", "-c", 'mount -t tmpfs -o mode=0755 tmpfs /var/lib && exec "$@"', "sh",
]  # fmt: skip


class Podman:
    """podman inside the sandbox with a private config, vfs storage and oci-systemd as runtime."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.dir = PODMAN_DIR
        self.wrapper, self.argv_log = write_runtime_wrapper(sb, self.dir)
        for name, template in (
            ("containers.conf", CONTAINERS_CONF),
            ("storage.conf", STORAGE_CONF),
            ("registries.conf", REGISTRIES_CONF),
        ):
            sb.host_path(f"{self.dir}/{name}").write_text(template.format(d=self.dir))
        for sub in ("cni", "tmp"):
            sb.host_path(f"{self.dir}/{sub}").mkdir(parents=True, exist_ok=True)
        self.env = {
            "CONTAINERS_CONF": f"{self.dir}/containers.conf",
            "CONTAINERS_STORAGE_CONF": f"{self.dir}/storage.conf",
            "CONTAINERS_REGISTRIES_CONF": f"{self.dir}/registries.conf",
        }

    def __call__(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_inside(self.sb, [*_PRIVATE_VAR_LIB, "podman", *args], env=self.env, timeout=timeout, **kw)

    def calls(self) -> list[list[str]]:
        return read_argv_log(self.sb, self.argv_log)

    def import_busybox(self) -> None:
        tar = busybox_rootfs_tar(self.sb, self.dir)
        proc = self("import", tar, IMAGE)
        assert proc.returncode == 0, text(proc)


# -- containerd ------------------------------------------------------------------------------

CONTAINERD_DIR = f"{ENGINES_DIR}/containerd"
# The runc shim's default --root for the runtime: /run/containerd/runc/<namespace>.
CONTAINERD_RUNTIME_ROOT = "/run/containerd/runc/default"

# Written verbatim (with {d} = CONTAINERD_DIR) and shown in docs/containerd.md.
CONTAINERD_CONFIG = """\
version = 2
root = "{d}/root"
state = "{d}/state"
# No CRI (it wants CNI and a kubelet), no snapshotters that cannot work here.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"""


class Containerd:
    """containerd as a transient service of the sandbox's systemd, with a private config."""

    def __init__(self, sb: Sandbox, unit: str) -> None:
        self.sb = sb
        self.dir = CONTAINERD_DIR
        self.unit = unit
        self.address = f"{self.dir}/containerd.sock"
        self.wrapper, self.argv_log = write_runtime_wrapper(sb, self.dir)
        sb.host_path(f"{self.dir}/config.toml").write_text(CONTAINERD_CONFIG.format(d=self.dir))

    def start(self) -> None:
        proc = run_inside(
            self.sb,
            [
                "systemd-run", f"--unit={self.unit}", "--collect", "-p", "KillMode=mixed",
                "containerd", "--config", f"{self.dir}/config.toml",
            ],
        )  # fmt: skip
        assert proc.returncode == 0, text(proc)
        wait_for(lambda: self.ctr("version").returncode == 0, timeout=20, what="containerd answering")

    def stop(self) -> None:
        run_inside(self.sb, ["systemctl", "stop", self.unit])

    def ctr(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_inside(self.sb, ["ctr", "--address", self.address, *args], timeout=timeout, **kw)

    def calls(self) -> list[list[str]]:
        return read_argv_log(self.sb, self.argv_log)

    def run_flags(self, container_id: str, *, systemd_cgroup: bool = True) -> list[str]:
        """`ctr run` options making oci-systemd the runc binary of io.containerd.runc.v2."""
        flags = ["--snapshotter", "native", "--runc-binary", self.wrapper]
        if systemd_cgroup:
            # What SystemdCgroup = true does for CRI: runc's `slice:prefix:name` cgroupsPath.
            flags += ["--runc-systemd-cgroup", "--cgroup", f"system.slice:containerd:{container_id}"]
        return flags

    def import_busybox(self, podman: Podman) -> None:
        """`podman save --format oci-archive` of the imported busybox, then `ctr image import`."""
        archive = f"{self.dir}/busybox-oci.tar"
        saved = podman("save", "--format", "oci-archive", "-o", archive, IMAGE)
        assert saved.returncode == 0, text(saved)
        imported = self.ctr("images", "import", "--snapshotter", "native", archive)
        assert imported.returncode == 0, text(imported)


@contextlib.contextmanager
def no_new_scopes(sandbox: Sandbox) -> Iterator[None]:
    """No scope that the engine calls inside the block created outlives it (others' are not ours)."""
    before = set(leftover_scopes(sandbox))
    yield
    # conmon's own scope may end a moment after podman returns.
    wait_for(lambda: set(leftover_scopes(sandbox)) <= before, timeout=10, what="no new scope left")


# -- containerd's CRI (crictl or cri_client) -------------------------------------------------

CRI_DIR = f"{ENGINES_DIR}/cri"
CRI_NAMESPACE = "k8s.io"
# The shim's --root per handler (its `Root` option), so each runtime's state can be checked alone.
CRI_RUNTIME_ROOTS = {"oci-systemd": "/run/containerd/oci-systemd", "runc": "/run/containerd/runc-cri"}
PAUSE_IMAGE = "localhost/pause:oci-systemd-test"
# The network namespace containerd runs in (`ip netns add`, in the sandbox's private /run): the
# CNI bridge and its addresses live there, never in the host's network namespace.
CRI_NETNS = "oci-systemd-cri"

# Written verbatim (with {d} = CRI_DIR, {oci_systemd} = the venv's launcher) and shown in
# docs/kubernetes.md.
CRI_CONTAINERD_CONFIG = """\
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # A pause image built from busybox (no registry here).
  sandbox_image = "{pause}"
  disable_apparmor = true
  # No CAP_SYS_RESOURCE games with the OOM score inside the sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    # native: a plain copy of the image; overlayfs on the sandbox's tmpfs /tmp works too.
    snapshotter = "native"
    default_runtime_name = "oci-systemd"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.oci-systemd]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.oci-systemd.options]
        BinaryName = "{oci_systemd}"
        Root = "{root_oci_systemd}"
        SystemdCgroup = true
    # The same set-up with runc, for comparison.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{root_runc}"
        SystemdCgroup = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"""

# Debian's containernetworking-plugins: a bridge with host-local addresses, plus loopback.
CRI_CNI_CONFIG = """\
{
  "cniVersion": "1.0.0",
  "name": "oci-systemd-test",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni-ocisd0",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "10.88.77.0/24"}]],
        "dataDir": "/run/oci-systemd-cni"
      }
    },
    {"type": "loopback"}
  ]
}
"""

# runc writes every limit of linux.resources into the cgroup and fails on a file that is not
# there: the private systemd's cgroup2 has no cpu, memory, io or pids controller (the CRI sets
# cpu.shares for every pod). The `runc` handler gets the bundle without them (devices stay);
# oci-systemd sets them as unit properties, which systemd accepts without the controllers.
RUNC_WRAPPER = """\
#!/bin/sh
bundle=
prev=
for arg in "$@"; do
    case $prev in --bundle|-b) bundle=$arg ;; esac
    prev=$arg
done
if [ -n "$bundle" ]; then
    /usr/bin/python3 -I -S -c '
import json, sys
path = sys.argv[1]
with open(path) as f:
    config = json.load(f)
resources = config.get("linux", {}).get("resources")
if resources:
    config["linux"]["resources"] = {k: v for k, v in resources.items() if k == "devices"}
with open(path, "w") as f:
    json.dump(config, f)
' "$bundle/config.json" || exit 1
fi
exec runc "$@"
"""

CRICTL_CONFIG = """\
runtime-endpoint: unix://{d}/containerd.sock
image-endpoint: unix://{d}/containerd.sock
timeout: 60
"""


def require_cri() -> None:
    """containerd, ctr, podman (the images) and the CNI plugins; crictl is optional: the tests
    drive the CRI with tests/integration/cri_client.py where it is not installed (cri_driver)."""
    require_binaries("containerd", "ctr", "podman")
    if not Path("/usr/lib/cni/bridge").exists():
        pytest.skip("containernetworking-plugins not installed: run scripts/setup")


class CriContainerd:
    """containerd with its CRI plugin as a transient service of the sandbox, in a network
    namespace of its own, with `oci-systemd` and `runc` runtime handlers."""

    def __init__(self, sb: Sandbox, unit: str) -> None:
        self.sb = sb
        self.dir = CRI_DIR
        self.unit = unit
        self.config = f"{self.dir}/config.toml"
        self.crictl_config = f"{self.dir}/crictl.yaml"
        self.socket = f"{self.dir}/containerd.sock"
        host = sb.host_path(self.dir)
        (host / "cni").mkdir(parents=True, exist_ok=True)
        # This venv's launcher, whatever OCI_RUNTIME says: the `runc` handler is the comparison.
        launcher = os.fspath(Path(sys.executable).with_name("oci-systemd"))
        (host / "config.toml").write_text(
            CRI_CONTAINERD_CONFIG.format(
                d=self.dir,
                pause=PAUSE_IMAGE,
                oci_systemd=launcher,
                root_oci_systemd=CRI_RUNTIME_ROOTS["oci-systemd"],
                root_runc=CRI_RUNTIME_ROOTS["runc"],
                runc=f"{self.dir}/bin/runc-sandboxed",
            )
        )
        (host / "cni" / "10-oci-systemd-test.conflist").write_text(CRI_CNI_CONFIG)
        runc = host / "bin" / "runc-sandboxed"
        runc.parent.mkdir(parents=True, exist_ok=True)
        runc.write_text(RUNC_WRAPPER)
        runc.chmod(0o755)
        (host / "crictl.yaml").write_text(CRICTL_CONFIG.format(d=self.dir))

    def start(self, answering: Callable[[], bool] | None = None) -> None:
        """containerd up, then `answering` (by default `crictl version` succeeding) within 30 s."""
        added = run_inside(self.sb, ["ip", "netns", "add", CRI_NETNS])
        assert added.returncode == 0, text(added)
        run_inside(self.sb, ["ip", "netns", "exec", CRI_NETNS, "ip", "link", "set", "lo", "up"])
        proc = run_inside(
            self.sb,
            [
                "systemd-run", f"--unit={self.unit}", "--collect", "-p", "KillMode=mixed",
                "-p", f"NetworkNamespacePath=/run/netns/{CRI_NETNS}",
                "containerd", "--config", self.config,
            ],
        )  # fmt: skip
        assert proc.returncode == 0, text(proc)
        if answering is None:
            answering = lambda: self.crictl("version").returncode == 0  # noqa: E731
        wait_for(answering, timeout=30, what="containerd's CRI answering")

    def stop(self) -> None:
        run_inside(self.sb, ["systemctl", "stop", self.unit])
        run_inside(self.sb, ["ip", "netns", "delete", CRI_NETNS])

    def crictl(self, *args: str, timeout: float = 90, **kw: Any) -> subprocess.CompletedProcess[str]:
        """crictl in containerd's network namespace: `exec` and `logs -f` stream from a server
        containerd listens on at 127.0.0.1 there."""
        argv = ["nsenter", f"--net=/run/netns/{CRI_NETNS}", "crictl", "--config", self.crictl_config, *args]
        return run_inside(self.sb, argv, timeout=timeout, **kw)

    def ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        address = f"{self.dir}/containerd.sock"
        return run_inside(
            self.sb, ["ctr", "--address", address, "-n", CRI_NAMESPACE, *args], timeout=timeout
        )

    def import_images(self, podman: Podman) -> None:
        """busybox and a pause image made of it (podman import), saved as OCI archives and
        imported into containerd's k8s.io namespace, where the CRI looks."""
        tar = busybox_rootfs_tar(self.sb, podman.dir)
        for image, changes in (
            (IMAGE, ["--change", 'CMD ["sh"]']),
            (PAUSE_IMAGE, ["--change", 'ENTRYPOINT ["/bin/sleep", "2147483647"]']),
        ):
            made = podman("import", *changes, tar, image)
            assert made.returncode == 0, text(made)
            archive = f"{self.dir}/{image.rsplit(':', 1)[0].rsplit('/', 1)[1]}-oci.tar"
            saved = podman("save", "--format", "oci-archive", "-o", archive, image)
            assert saved.returncode == 0, text(saved)
            imported = self.ctr("images", "import", "--snapshotter", "native", archive)
            assert imported.returncode == 0, text(imported)
