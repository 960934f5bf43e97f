# SPDX-License-Identifier: Apache-2.0
"""The Debian package: built with packaging/build-deb, installed into a clean Debian 12 tree.

- The .deb is built once per source state (a hash of the files it is built from) and cached in
  build/packaging-test/ (OCI_SYSTEMD_PACKAGING_CACHE), so an unchanged tree reuses it.
- The clean tree is `debootstrap --variant=minbase bookworm`, made once and kept as a tarball;
  every session unpacks a fresh copy and installs the .deb there with `apt-get install ./deb`,
  so Depends are resolved by apt against Debian's own packages (python3-pystemd 0.11, ...).
  The tree lives under build/ because the sandbox's /tmp is private.
- `oci-systemd --version`, man pages and completions are checked from the installed files, and
  a busybox container runs under the private systemd with the *installed* runtime: chroot into
  the tree (its /usr/bin/oci-systemd, its python3 and Debian's libraries) with the sandbox's
  /run, /sys, /proc and /dev bound in, so the runtime talks to the sandbox's systemd.

First run: ~1-2 minutes (debootstrap and downloads from deb.debian.org); cached runs: seconds
for the tree plus the container.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import bundles
import pytest

from oci_systemd import __version__
from oci_systemd.devtools.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("OCI_SYSTEMD_PACKAGING_CACHE", REPO / "build" / "packaging-test"))
MIRROR = os.environ.get("OCI_SYSTEMD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "bookworm"
BASE_TARBALL = CACHE / f"{SUITE}-minbase.tar"
APT_ARCHIVES = CACHE / "apt-archives"
# What build-deb leaves out of the source copy (plus tests/, which the .deb does not contain).
_SKIP_TOP = {".git", ".venv", "build", "dist", "tests", "benchmarks"}
_SKIP_ANY = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}

pytestmark = pytest.mark.skipif(
    shutil.which("apt-get") is None or shutil.which("dpkg-query") is None,
    reason="needs Debian tooling (apt-get, dpkg)",
)


def _run(
    argv: list[str], *, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{shlex.join(argv)} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
            f"\n--- stderr ---\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc


def source_hash() -> str:
    """A digest of every file the .deb is built from (paths and contents)."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(REPO):
        rel_dir = Path(dirpath).relative_to(REPO)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in _SKIP_ANY
            and not d.endswith(".egg-info")
            and not (rel_dir == Path(".") and d in _SKIP_TOP)
        )
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            digest.update(os.fsencode(rel_dir / name) + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="module")
def deb() -> Path:
    """The .deb for the current source, built by packaging/build-deb unless cached."""
    out = CACHE / f"deb-{source_hash()}"
    found = sorted(out.glob("oci-systemd_*_all.deb"))
    if found:
        return found[-1]
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    proc = _run(
        ["bash", os.fspath(REPO / "packaging" / "build-deb"), os.fspath(tmp)],
        env={**os.environ, "LINTIAN": "0"},
    )
    built = Path(proc.stdout.strip().splitlines()[-1])
    assert built.is_file(), proc.stdout[-2000:]
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    for old in CACHE.glob("deb-*"):  # keep only the current build
        if old != out:
            shutil.rmtree(old, ignore_errors=True)
    return out / built.name


def _base_tarball() -> Path:
    """debootstrap --variant=minbase bookworm, with apt lists, once; kept as a tarball."""
    if BASE_TARBALL.exists():
        return BASE_TARBALL
    if shutil.which("debootstrap") is None:
        _run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"],
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    work = CACHE / "debootstrap.partial"
    shutil.rmtree(work, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--variant=minbase", SUITE, os.fspath(work), MIRROR], timeout=900)
    # Services must not start in a chroot (dbus, systemd postinsts honour policy-rc.d).
    policy = work / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    _run(["chroot", os.fspath(work), "apt-get", "update", "-q"], timeout=300)
    tmp = BASE_TARBALL.with_suffix(".partial")
    _run(["tar", "-C", os.fspath(work), "--numeric-owner", "-cf", os.fspath(tmp), "."])
    tmp.rename(BASE_TARBALL)
    shutil.rmtree(work, ignore_errors=True)
    return BASE_TARBALL


def _apt_install(tree: Path, deb_inside: str) -> None:
    """apt-get install the .deb in the tree, /proc mounted and the archive cache shared."""
    APT_ARCHIVES.mkdir(parents=True, exist_ok=True)
    (APT_ARCHIVES / "partial").mkdir(exist_ok=True)
    t = shlex.quote(os.fspath(tree))
    archives = shlex.quote(os.fspath(APT_ARCHIVES))
    script = f"""
        set -e
        mount -t proc proc {t}/proc
        mount --bind {archives} {t}/var/cache/apt/archives
        export DEBIAN_FRONTEND=noninteractive
        install() {{ chroot {t} apt-get install -y -q --no-install-recommends {deb_inside}; }}
        # Cached apt lists go stale when Debian publishes updates: refresh once and retry.
        install || {{ chroot {t} apt-get update -q && install; }}
    """
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], timeout=600)


@pytest.fixture(scope="module")
def tree(deb: Path) -> Iterator[Path]:
    """A fresh Debian 12 tree with the .deb installed by apt; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("installing into a Debian tree needs root")
    base = _base_tarball()
    root = CACHE / f"tree-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        with tarfile.open(base) as tar:
            # Our own debootstrap tarball (device nodes, absolute links): trusted. `filter`
            # exists from 3.11.4 on (Debian 12 has 3.11.2); without it, this is the behaviour.
            if hasattr(tarfile, "fully_trusted_filter"):
                tar.extractall(root, numeric_owner=True, filter="fully_trusted")
            else:
                tar.extractall(root, numeric_owner=True)
        shutil.copy2(deb, root / "root" / deb.name)
        _apt_install(root, f"/root/{deb.name}")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _chroot(tree: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return _run(["chroot", os.fspath(tree), *argv], timeout=120)


# -- the package's contents ----------------------------------------------------------------------


def test_dpkg_says_installed(tree: Path) -> None:
    status = _chroot(tree, ["dpkg-query", "-W", "-f=${Status} ${Version}", "oci-systemd"]).stdout
    assert status.startswith("install ok installed"), status
    assert status.split()[-1].split("-")[0] == __version__


def test_version_from_installed_files(tree: Path) -> None:
    out = _chroot(tree, ["oci-systemd", "--version"]).stdout
    lines = out.splitlines()
    assert lines[0] == f"oci-systemd version {__version__}", out
    assert lines[1].startswith("commit: ") and lines[1] != "commit: unknown", out
    # It ran Debian's python3 with Debian's packages, not this venv.
    where = _chroot(
        tree, ["python3", "-c", "import oci_systemd, pystemd; print(oci_systemd.__file__, pystemd.__file__)"]
    )
    assert where.stdout.split() == [
        "/usr/lib/python3/dist-packages/oci_systemd/__init__.py",
        "/usr/lib/python3/dist-packages/pystemd/__init__.py",
    ]


def test_files_in_place(tree: Path) -> None:
    expected = [
        "usr/bin/oci-systemd",
        "usr/lib/systemd/catalog/oci-systemd.catalog",
        "usr/share/man/man8/oci-systemd.8.gz",
        "usr/share/man/man8/oci-systemd-create.8.gz",
        "usr/share/man/man8/oci-systemd-sandbox-up.8.gz",
        "usr/share/bash-completion/completions/oci-systemd",
        "usr/share/zsh/vendor-completions/_oci-systemd",
        "usr/share/fish/vendor_completions.d/oci-systemd.fish",
    ]
    # Whatever units/ holds is shipped.
    units = sorted(p.name for p in (REPO / "units").glob("*") if p.suffix in (".service", ".socket"))
    expected += [f"lib/systemd/system/{name}" for name in units]
    if (REPO / "units" / "oci-systemd.tmpfiles.conf").exists():
        expected.append("usr/lib/tmpfiles.d/oci-systemd.conf")
    missing = [path for path in expected if not (tree / path).exists()]
    assert not missing, f"not installed: {missing}"
    for name in units:
        assert (tree / "lib/systemd/system" / name).read_bytes() == (REPO / "units" / name).read_bytes()
    # And as user units (systemctl --user), the same files but wanted by default.target: a
    # user's manager has no multi-user.target.
    for name in units:
        user_unit = tree / "usr/lib/systemd/user" / name
        assert user_unit.exists(), f"{user_unit} not installed"
        source = (REPO / "units" / name).read_text()
        assert user_unit.read_text() == source.replace(
            "\nWantedBy=multi-user.target\n", "\nWantedBy=default.target\n"
        )


def test_units_enable_in_both_managers(tree: Path) -> None:
    """`systemctl enable` of an instance links it where each manager starts it: the system's
    multi-user.target, a user's default.target (`--global`: every user's, offline here)."""
    instances = ["oci-container@web.service", "oci-scope@db.service"]
    links: list[str] = []
    try:
        for args in (["--global"], []):
            proc = subprocess.run(
                ["systemctl", f"--root={tree}", *args, "enable", *instances],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
        links = sorted(
            str(p.relative_to(tree)) for d in ("etc/systemd/system", "etc/systemd/user")
            for p in (tree / d).glob("*.wants/oci-*@*.service")
        )  # fmt: skip
    finally:
        for args in (["--global"], []):
            subprocess.run(
                ["systemctl", f"--root={tree}", *args, "disable", *instances], capture_output=True
            )
    assert links == [
        "etc/systemd/system/multi-user.target.wants/oci-container@web.service",
        "etc/systemd/system/multi-user.target.wants/oci-scope@db.service",
        "etc/systemd/user/default.target.wants/oci-container@web.service",
        "etc/systemd/user/default.target.wants/oci-scope@db.service",
    ]


def test_man_page_renders(tree: Path) -> None:
    page = tree / "usr/share/man/man8/oci-systemd-create.8.gz"
    rendered = _run(["man", "-l", os.fspath(page)], env={**os.environ, "MANWIDTH": "100"}).stdout
    out = re.sub(".\b", "", rendered)  # overstrike bold/underline, as `col -b` would
    assert "oci-systemd-create" in out
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "SEE ALSO"):
        assert heading in out
    assert "--bundle" in out


def test_bash_completion_answers(tree: Path) -> None:
    """The installed completion calls the installed command back, which lists its commands."""
    script = (
        "source /usr/share/bash-completion/completions/oci-systemd; "
        "COMP_WORDS=(oci-systemd cre); COMP_CWORD=1; _oci_systemd_completion oci-systemd; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = _chroot(tree, ["bash", "-c", script]).stdout.split()
    assert out == ["create"], out


# -- a container, run by the installed runtime ---------------------------------------------------


def test_container_runs_with_installed_runtime(tree: Path, sandbox: Sandbox) -> None:
    cid = bundles.new_container_id()
    bundle = tree / "var/lib/oci-systemd-test" / cid
    conf = bundles.add_all_namespaces(bundles.base_config(), netns=False)
    conf["process"]["args"] = ["sh", "-c", "echo hello from $(hostname); exit 7"]
    conf["hostname"] = "packaged"
    rootfs = bundles.build_rootfs(tree / "var/lib/oci-systemd-test/rootfs")
    bundles.make_bundle(bundle, conf, rootfs=rootfs)
    t = shlex.quote(os.fspath(tree))
    script = f"""
        set -e
        # The chroot's / must be a mount point, as a real root is (the idler remounts / and
        # pivot_root()s away from it).
        mount --bind {t} {t}
        mount --rbind /run {t}/run
        mount --rbind /sys {t}/sys
        mount --rbind /dev {t}/dev
        mount -t proc proc {t}/proc
        set +e
        chroot {t} /usr/bin/oci-systemd run --bundle /var/lib/oci-systemd-test/{cid} {cid}
        echo "status=$?"
        chroot {t} /usr/bin/oci-systemd delete --force {cid} >/dev/null 2>&1
        chroot {t} /usr/bin/oci-systemd list -q
    """
    # A private mount namespace inside the sandbox: the binds vanish with it.
    proc = sandbox.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    shutil.rmtree(bundle, ignore_errors=True)
    output = proc.stdout + proc.stderr
    assert "hello from packaged" in proc.stdout, output
    assert "status=7" in proc.stdout, output
    assert cid not in proc.stdout.split("status=7", 1)[1], f"container left behind:\n{output}"
