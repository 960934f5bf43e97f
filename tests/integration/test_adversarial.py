# SPDX-License-Identifier: Apache-2.0
"""Attacks from issue 14's review, each performed for real (markers, never damage) and refused:

- a container process with CAP_SYS_PTRACE walks the waiting idler's /proc/1/{fd,cwd,root,exe}
  onto the host (a marker in the state directory and next to the rootfs must stay unread);
- the image plants every stdlib module name where the host's interpreter looks: the idler must
  import none of them (create, junk on the start socket, start, exec; user ns, tty, hooks);
- a stalled connection on the start socket, a start hook that takes long, a paused created
  container: start must neither hang nor make state/kill/delete --force wait;
- an unprivileged local user reads the state (environment secrets) or starts a container;
- a local user plants symlinks where --pid-file writes its temporary file;
- --preserve-fds over fds that are not open, or over fds the runtime opens itself.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bundles
import pytest
from test_exec import _console
from test_lifecycle import ROOT, Container, no_trace_left, wait_for

from oci_systemd.devtools.sandbox import Sandbox

# A uid/gid with no account: "an unprivileged local user" without touching /etc/passwd.
LOCAL_USER = 4242


def _config(args: list[str]) -> dict[str, Any]:
    conf = bundles.base_config()
    conf["process"]["args"] = args
    return conf


def as_local_user(sb: Sandbox, script: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """`sh -c script` as the unprivileged LOCAL_USER, inside the sandbox."""
    argv = [
        "setpriv",
        f"--reuid={LOCAL_USER}",
        f"--regid={LOCAL_USER}",
        "--clear-groups",
        "sh",
        "-c",
        script,
    ]
    return sb.run(
        argv, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL, **kw
    )


def state_dir(sb: Sandbox, cid: str) -> Path:
    return sb.host_path(f"{ROOT}/{cid}")


# -- 1: nothing of the host through the waiting idler ------------------------------------------

WALK_PID1 = (
    "for f in /proc/1/fd/* /proc/1/cwd /proc/1/root /proc/1/exe; do "
    '  echo "link $f -> $(readlink $f)"; '
    "  for p in $f/{m} $f/../{m} $f/../../{m} $f/../../../{m} $f/../{cid}/{m}; do "
    '    cat $p 2>/dev/null && echo "READ $p"; '
    "  done; "
    '  ls -a $f/.. 2>/dev/null | grep -q {cid} && echo "LISTED-STATE-ROOT via $f"; '
    "done; echo walk-done"
)


def test_waiting_idler_leads_nowhere_on_the_host(sandbox: Sandbox) -> None:
    c = Container(sandbox, _config(["sleep", "1000"]))
    assert c.create().returncode == 0, c.output()
    token, marker = secrets.token_hex(8), f"marker-{secrets.token_hex(3)}"
    # Where a walk from a host fd or a host cwd would land: the state directory, the bundle.
    for where in (state_dir(sandbox, c.id), c.host_bundle):
        (where / marker).write_text(token)
    script = WALK_PID1.replace("{m}", marker).replace("{cid}", c.id)
    proc = c.rt("exec", "--cap", "CAP_SYS_PTRACE", c.id, "sh", "-c", script)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "walk-done" in out, out
    # The control: CAP_SYS_PTRACE did let it look into pid 1 (its stdout is the bundle's file).
    assert f"link /proc/1/fd/1 -> {c.bundle}/output" in out, out
    assert token not in out and "READ " not in out and "LISTED-STATE-ROOT" not in out, out
    # /proc/1/exe is the host's interpreter, and CAP_SYS_PTRACE opens it: CVE-2019-5736 keeps
    # that fd and reopens it for writing once the idler has exec'd. While any python runs
    # (this test does) the kernel says ETXTBSY before it looks at the mount, so check that the
    # mount is read-only, where the same write would end with EROFS.
    exe = sandbox.host_path(f"/proc/{c.state()['pid']}/exe")
    assert os.statvfs(exe).f_flag & os.ST_RDONLY, "the idler runs from a writable mount"
    assert c.status() == "created"
    assert c.rt("start", c.id).returncode == 0
    assert c.status() == "running"


# -- 2: no import from the image ----------------------------------------------------------------

_PLANT = r"""
import os, sys
rootfs, out = sys.argv[1], sys.argv[2]
dirs = [p for p in sys.path[1:] if p] + sys.argv[3:]
for d in dirs:
    base = rootfs + d
    os.makedirs(base, exist_ok=True)
    for name in sys.stdlib_module_names:
        code = f"import os\nos.write(2, b'PLANTED-IMPORT {name}\\n')\n"
        os.makedirs(f"{base}/{name}", exist_ok=True)
        with open(f"{base}/{name}/__init__.py", "w") as f:
            f.write(code)
        with open(f"{base}/{name}.py", "w") as f:
            f.write(code)
print(len(dirs))
"""


def plant_stdlib(rootfs: Path) -> None:
    """Every stdlib module name, as a package and as a .py file, in every directory of the
    idler's sys.path (python -I -S, plus the package directory), seen inside the rootfs."""
    import site

    import oci_systemd

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(oci_systemd.__file__)))
    extra = [
        pkg_parent,
        *site.getsitepackages(),
        "/usr/lib/python3/dist-packages",
        f"/usr/local/lib/python{sys.version_info.major}.{sys.version_info.minor}/dist-packages",
    ]
    subprocess.run(
        [sys.executable, "-I", "-S", "-c", _PLANT, os.fspath(rootfs), "-", *extra], check=True, timeout=120
    )


JUNK = r"""
import socket, sys, time
path = sys.argv[1]
for data in (b"\x00\x00\x00\x05{{{{{", b"\x00\x00\x00\x03\xff\xfe\xfd", b"\x00\x00\x00\x04[1,]",
             b"\x00\x00\x00\x09" + b'{"type":1', b"\x00\x00\x00\x02{}", b"\x00\x00\x10\x00"):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    try:
        s.recv(10)
    except OSError:
        pass
    s.close()
print("junk-sent")
"""


def send_junk(sb: Sandbox, cid: str) -> None:
    proc = sb.run(
        [sys.executable, "-I", "-S", "-c", JUNK, f"{ROOT}/{cid}/start.sock"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "junk-sent" in proc.stdout, proc.stderr


def _userns(conf: dict[str, Any], rootfs: Path) -> None:
    host_id = 200000
    conf["linux"]["namespaces"].append({"type": "user"})
    conf["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    conf["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    for path in [rootfs, *rootfs.rglob("*")]:
        os.lchown(path, host_id, host_id)


@pytest.mark.parametrize("variant", ["plain", "seccomp-nnp", "userns-hooks", "tty"])
def test_idler_imports_nothing_from_the_image(sandbox: Sandbox, variant: str) -> None:
    conf = _config(["sh", "-c", "echo program-ran; sleep 1000"])
    if variant == "seccomp-nnp":
        conf["process"]["noNewPrivileges"] = True
        conf["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mknod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        }
    if variant == "userns-hooks":
        conf["hooks"] = {
            "createContainer": [{"path": "/bin/true"}],
            "startContainer": [{"path": "/bin/true"}],
        }
    if variant == "tty":
        conf["process"]["terminal"] = True
    c = Container(sandbox, conf)
    rootfs = c.host_bundle / "rootfs"
    plant_stdlib(rootfs)
    if variant == "userns-hooks":
        _userns(conf, rootfs)
        import json

        (c.host_bundle / "config.json").write_text(json.dumps(conf))
    extra: tuple[str, ...] = ()
    rec = None
    if variant == "tty":
        rec, sock, _read = _console(sandbox, c.id)
        extra = ("--console-socket", sock)
    try:
        assert c.create(*extra).returncode == 0, c.output()
        send_junk(sandbox, c.id)
        assert c.status() == "created", c.output()
        start = c.rt("start", c.id)
        assert start.returncode == 0, start.stderr + c.output()
        ex = c.rt("exec", c.id, "sh", "-c", "echo exec-ran")
        assert ex.returncode == 0, ex.stderr
        if variant != "tty":
            wait_for(lambda: "program-ran" in c.output())
        assert "PLANTED-IMPORT" not in c.output() + start.stderr + ex.stderr + ex.stdout, c.output()
    finally:
        if rec is not None:
            rec.kill()
            rec.wait()
        c.rt("delete", "--force", c.id)


# -- 3, 4: start never hangs, and never makes others wait ------------------------------------------

STALL = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"\x00\x00\x00\x10")  # a length header, then nothing
print("stalled", flush=True)
time.sleep(60)
"""


def test_stalled_start_connection_does_not_wedge_start(sandbox: Sandbox) -> None:
    c = Container(sandbox, _config(["sleep", "1000"]))
    assert c.create().returncode == 0, c.output()
    staller = subprocess.Popen(
        [*sandbox.nsenter_argv(), sys.executable, "-I", "-S", "-c", STALL, f"{ROOT}/{c.id}/start.sock"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert staller.stdout is not None and staller.stdout.readline().strip() == "stalled"
        began = time.monotonic()
        proc = c.rt("start", c.id, timeout=20)
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - began < 10
        assert c.status() == "running"
    finally:
        staller.kill()
        staller.wait()


def test_slow_start_lets_state_kill_and_delete_through(sandbox: Sandbox) -> None:
    """A startContainer hook that takes 30 s keeps start busy: state and delete --force must
    still answer at once (they wait for the container's lock)."""
    conf = _config(["sleep", "1000"])
    conf["hooks"] = {"startContainer": [{"path": "/bin/sleep", "args": ["sleep", "30"]}]}
    c = Container(sandbox, conf)
    assert c.create().returncode == 0, c.output()
    start = subprocess.Popen(
        [*sandbox.nsenter_argv(), *bundles.runtime_argv(), "start", c.id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: not (state_dir(sandbox, c.id) / "start.sock").exists(), timeout=10)
        state = c.rt("state", c.id, timeout=5)
        assert state.returncode == 0, state.stderr
        kill = c.rt("kill", c.id, "CONT", timeout=5)
        assert kill.returncode == 0, kill.stderr
        delete = c.rt("delete", "--force", c.id, timeout=15)
        assert delete.returncode == 0, delete.stderr
        _out, err = start.communicate(timeout=15)
        assert start.returncode != 0 and "not running" in err, err
        no_trace_left(sandbox, c)
    finally:
        if start.poll() is None:
            start.kill()
        start.wait()


def test_start_of_a_paused_created_container_is_refused(sandbox: Sandbox) -> None:
    c = Container(sandbox, _config(["sleep", "1000"]))
    assert c.create().returncode == 0, c.output()
    assert c.rt("pause", c.id).returncode == 0
    proc = c.rt("start", c.id, timeout=20)
    assert proc.returncode != 0, proc.stderr
    assert "cannot start a container in the paused state" in proc.stderr, proc.stderr  # runc's words
    assert c.status() == "paused"
    assert c.rt("resume", c.id, timeout=10).returncode == 0
    assert c.status() == "created"
    assert c.rt("start", c.id, timeout=20).returncode == 0
    assert c.status() == "running"


# -- 5: a config.json that never ends ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_endless_config_is_refused(sandbox: Sandbox, kind: str) -> None:
    c = Container(sandbox, _config(["true"]))
    config = c.host_bundle / "config.json"
    config.unlink()
    if kind == "dev-zero":
        config.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(config)
    else:
        with config.open("wb") as f:
            f.truncate(64 * 1024 * 1024)
    proc = c.rt("create", "--bundle", c.bundle, c.id, timeout=30)
    want = "larger than 4 MiB" if kind == "huge" else "not a regular file"
    assert proc.returncode == 1 and want in proc.stderr, proc.stderr
    no_trace_left(sandbox, c)


# -- 6: the state is root's only -------------------------------------------------------------------


PROBE = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
print("CONNECTED", flush=True)
data = b'{"type":"start"}'
s.sendall(len(data).to_bytes(4, "big") + data)
s.recv(9)
"""


@pytest.mark.parametrize("umask", ["022", "000"])
def test_local_user_reads_no_state_and_cannot_start(sandbox: Sandbox, umask: str) -> None:
    secret = f"SECRET={secrets.token_hex(8)}"
    conf = _config(["sleep", "1000"])
    conf["process"]["env"].append(secret)
    c = Container(sandbox, conf)
    create = ["create", "--bundle", c.bundle, c.id]
    created = sandbox.run(
        [
            "sh",
            "-c",
            f'umask {umask}; exec "$@" >{c.bundle}/output 2>&1',
            "sh",
            *bundles.runtime_argv(),
            *create,
        ],
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert created.returncode == 0, c.output()
    d = f"{ROOT}/{c.id}"
    (c.host_bundle / "probe.py").write_text(PROBE)
    probe = as_local_user(
        sandbox,
        f"ls {ROOT} && echo LISTED; cat {d}/state.json {d}/config.json; "
        f"python3 -I -S {c.bundle}/probe.py {d}/start.sock; echo probe-done",
    )
    out = probe.stdout + probe.stderr
    assert "probe-done" in out, out
    assert secret not in out and "LISTED" not in out and "CONNECTED" not in out, out
    for name in ("state.json", "config.json", "start.sock"):
        assert (state_dir(sandbox, c.id) / name).stat().st_mode & 0o077 == 0, name
    assert c.status() == "created"


# -- 7: --pid-file never writes through a symlink ------------------------------------------------


def test_pid_file_does_not_follow_planted_symlinks(sandbox: Sandbox) -> None:
    c = Container(sandbox, _config(["sleep", "1000"]))
    victim = c.host_bundle / "victim"  # root's file, in a directory the user cannot write
    victim.write_text("precious\n")
    user_dir = c.host_bundle / "userdir"
    user_dir.mkdir()
    os.chown(user_dir, LOCAL_USER, LOCAL_USER)
    inner_dir, inner_victim = f"{c.bundle}/userdir", f"{c.bundle}/victim"
    last = int(sandbox.run(["cat", "/proc/sys/kernel/ns_last_pid"], capture_output=True, text=True).stdout)
    # The old temporary name was <pid file>.<runtime pid>.tmp: cover the next pids, and the
    # pid file's own name.
    # One process plants them all (a shell loop would use up the pids it plants for).
    plant = as_local_user(
        sandbox,
        f'cd {inner_dir} && python3 -I -S -c "import os\n'
        f"os.symlink('{inner_victim}', 'pid')\n"
        f"for i in range({last}, {last + 3000}): os.symlink('{inner_victim}', f'pid.{{i}}.tmp')\n\" "
        "&& echo planted",
    )
    assert "planted" in plant.stdout, plant.stderr
    with (c.host_bundle / "output").open("w") as out:
        proc = c.rt(
            "create",
            "--bundle",
            c.bundle,
            "--pid-file",
            f"{inner_dir}/pid",
            c.id,
            stdout=out,
            stderr=out,
            capture_output=False,
        )
    assert proc.returncode == 0, c.output()
    assert victim.read_text() == "precious\n"
    pid_file = user_dir / "pid"
    assert not pid_file.is_symlink() and pid_file.read_text() == str(c.state()["pid"])


# -- 8: --preserve-fds ---------------------------------------------------------------------------


def _with_fds(sb: Sandbox, setup: str, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the runtime with the fds a shell `setup` leaves open (exec 3</dev/null ...)."""
    return sb.run(
        ["bash", "-c", f'{setup}; exec "$@"', "bash", *bundles.runtime_argv(), *argv],
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 60),
        stdin=subprocess.DEVNULL,
        **kw,
    )


def _close_from(first: int) -> str:
    return "; ".join(f"exec {fd}<&-" for fd in range(first, 40))


@pytest.mark.parametrize("preserve", [2, 20])
def test_preserve_fds_with_a_hole_is_refused(sandbox: Sandbox, preserve: int) -> None:
    """fd 3 open, the rest of the range not: the runtime's own fds (the state directory's
    locked fd) would land there and be handed to the container."""
    c = Container(sandbox, _config(["true"]))
    setup = f"{_close_from(3)}; exec 3</dev/null"
    argv = ["run", "--preserve-fds", str(preserve), "--bundle", c.bundle, c.id]
    proc = _with_fds(sandbox, setup, argv, timeout=30)
    assert proc.returncode == 1 and "unable to stat preserved-fd 1" in proc.stderr, proc.stderr
    no_trace_left(sandbox, c)


def test_preserve_fds_over_twenty_open_fds(sandbox: Sandbox) -> None:
    c = Container(sandbox, _config(["sh", "-c", "ls -l /proc/1/fd"]))
    setup = _close_from(3) + "; " + "; ".join(f"exec {fd}</dev/null" for fd in range(3, 23))
    proc = _with_fds(sandbox, setup, ["run", "--preserve-fds", "20", "--bundle", c.bundle, c.id])
    assert proc.returncode == 0, proc.stderr
    # "lr-x------ ... 3 -> /dev/null": the fds of the container's sh, as ls (its child) sees them
    fds = dict(line.split()[-3::2] for line in proc.stdout.splitlines() if " -> " in line)
    assert sorted(map(int, fds)) == list(range(23)), proc.stdout
    assert all(fds[str(fd)] == "/dev/null" for fd in range(3, 23)), proc.stdout
