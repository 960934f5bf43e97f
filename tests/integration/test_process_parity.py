# SPDX-License-Identifier: Apache-2.0
"""The container process and its hooks as runc and crun make them (issues 13 and 14).

Unknown capabilities are a warning, a missing cwd is created, HOME comes from the container's
passwd, hooks without `env` inherit the runtime's environment, a failing hook's error is
reported once and keeps its class, and startContainer hooks run with the process's
credentials, capabilities, no_new_privs and seccomp, not the idler's. Each test also runs
against runc/crun with OCI_RUNTIME=runc (or crun).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import bundles
import pytest
from test_environment import config, run, run_prepared, status_fields, tagged
from test_lifecycle import Container, no_trace_left, start_sleeping

from oci_systemd.container.abi import CAPABILITIES
from oci_systemd.devtools.sandbox import Sandbox

CAPS = ["CAP_CHOWN", "CAP_UNKNOWN", "CAP_KILL"]


@pytest.fixture(autouse=True)
def _old_oci_version_for_crun(monkeypatch: pytest.MonkeyPatch) -> None:
    """crun 1.8 refuses ociVersion 1.2.0 ("unknown version specified"). (In the private systemd
    crun 1.8.1 then still fails every container with `setrlimit (RLIM_MEMLOCK): Operation not
    permitted`, so crun could not be compared here.)"""
    if "crun" in os.environ.get("OCI_RUNTIME", ""):
        base = bundles.base_config

        def older() -> dict[str, Any]:
            conf = base()
            conf["ociVersion"] = "1.0.2"
            return conf

        monkeypatch.setattr(bundles, "base_config", older)


def cap_mask(names: list[str]) -> int:
    return sum(1 << CAPABILITIES[name] for name in set(names))


def _journal(sb: Sandbox, *match: str) -> list[dict[str, Any]]:
    sb.run(["journalctl", "--sync"])
    out = sb.run(["journalctl", "--no-pager", "-o", "json", *match], capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _is_oci_systemd() -> bool:
    """False under OCI_RUNTIME=runc/crun: their wording and journal entries differ."""
    return not any(name in os.environ.get("OCI_RUNTIME", "") for name in ("runc", "crun"))


# -- 1. unknown capabilities: a warning, the known ones apply ----------------------------------------


def test_unknown_capability_is_a_warning_and_the_rest_apply(sandbox: Sandbox) -> None:
    conf = config("grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status")
    conf["process"]["capabilities"] = {kind: CAPS for kind in ("bounding", "effective", "permitted")}
    c = Container(sandbox, conf)
    rc, out = run_prepared(c)
    assert rc == 0, out
    want = f"{cap_mask(['CAP_CHOWN', 'CAP_KILL']):016x}"
    fields = status_fields(out)
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapBnd"] == want, out
    assert "CAP_UNKNOWN" in out, "no warning about the unknown capability"
    if _is_oci_systemd():
        entries = _journal(sandbox, f"CONTAINER_ID={c.id}", "PRIORITY=4")
        assert any("CAP_UNKNOWN" in e["MESSAGE"] for e in entries), entries


def test_exec_cap_unknown_is_a_warning(sandbox: Sandbox) -> None:
    c = start_sleeping(sandbox)
    proc = c.rt(
        "exec", "--cap", "CAP_UNKNOWN", "--cap", "CAP_CHOWN", c.id, "grep", "^CapEff", "/proc/self/status"
    )
    assert proc.returncode == 0, proc.stderr
    assert "CAP_UNKNOWN" in proc.stderr
    eff = int(proc.stdout.split()[1], 16)
    assert eff & cap_mask(["CAP_CHOWN"]), proc.stdout
    bundles.delete_container(sandbox, c.id)


# -- 2. a missing cwd is created, even below a read-only root ----------------------------------------


@pytest.mark.parametrize("uid", [0, 1000])
def test_missing_cwd_is_created_below_a_readonly_root(sandbox: Sandbox, uid: int) -> None:
    conf = config(
        "echo pwd=$(pwd); echo owner=$(stat -c %u:%g:%a /work/deep/dir); touch /x 2>/dev/null; echo rc=$?"
    )
    conf["process"]["cwd"] = "/work/deep/dir"
    conf["process"]["user"] = {"uid": uid, "gid": uid}
    conf["root"]["readonly"] = True
    got = tagged(run(sandbox, conf))
    assert got["pwd"] == "/work/deep/dir"
    assert got["owner"] == "0:0:755", "created as runc does: by the container's root, 0755"
    assert got["rc"] != "0", "the root is still read-only"


def test_cwd_that_is_a_file_fails_clearly(sandbox: Sandbox) -> None:
    conf = config("pwd")
    conf["process"]["cwd"] = "/etc/passwd"
    c = Container(sandbox, conf)
    rc, out = run_prepared(c)
    assert rc != 0
    assert "/etc/passwd" in out and "not a directory" in out.lower(), out


# -- 3. HOME from the container's passwd -----------------------------------------------------------


@pytest.mark.parametrize(("uid", "home"), [(0, "/root"), (65534, "/nonexistent"), (4242, "/")])
def test_home_from_passwd(sandbox: Sandbox, uid: int, home: str) -> None:
    conf = config("echo home=$HOME")
    conf["process"]["user"] = {"uid": uid, "gid": uid}
    conf["process"]["env"] = [e for e in conf["process"]["env"] if not e.startswith("HOME=")]
    assert tagged(run(sandbox, conf))["home"] == home


def test_home_from_the_config_wins(sandbox: Sandbox) -> None:
    conf = config("echo home=$HOME")
    conf["process"]["env"].append("HOME=/elsewhere")
    assert tagged(run(sandbox, conf))["home"] == "/elsewhere"


def test_exec_home_for_its_own_user(sandbox: Sandbox) -> None:
    c = start_sleeping(sandbox)  # the default process.env has no HOME
    as_root = c.rt("exec", c.id, "sh", "-c", "echo $HOME")
    as_nobody = c.rt("exec", "--user", "65534:65534", c.id, "sh", "-c", "echo $HOME")
    assert (as_root.stdout.strip(), as_nobody.stdout.strip()) == ("/root", "/nonexistent"), (
        as_root.stderr + as_nobody.stderr
    )
    bundles.delete_container(sandbox, c.id)


# -- 4. hooks without env inherit the runtime's environment -------------------------------------------


def _env_hook(log: str) -> dict[str, Any]:
    return {"path": "/bin/sh", "args": ["sh", "-c", f"echo HOOK_PROBE=${{HOOK_PROBE:-unset}} >> {log}"]}


def test_hooks_without_env_inherit_their_runners_environment(sandbox: Sandbox) -> None:
    """As runc: hooks run by the runtime inherit its environment, hooks run in the container
    (createContainer, startContainer) the process's (runc's init has only that by then); an
    explicit `env`, even [], is the whole environment (Go's exec.Cmd: only a nil Env inherits)."""
    log = f"{bundles.INNER_WORKDIR}/hookenv-{os.getpid()}-{os.urandom(3).hex()}"
    explicit = {**_env_hook(log), "env": ["HOOK_PROBE=explicit"]}
    empty = {**_env_hook(log), "env": []}
    conf = bundles.base_config()
    conf["process"]["args"] = ["true"]
    conf["process"]["env"].append("HOOK_PROBE=from-process")
    conf["root"]["readonly"] = False
    conf["hooks"] = {
        "createRuntime": [_env_hook(log), explicit, empty],
        "createContainer": [_env_hook(log), explicit],
        "startContainer": [_env_hook("/tmp/hookenv"), {**_env_hook("/tmp/hookenv"), "env": []}],
        "poststop": [_env_hook(log)],
    }
    c = Container(sandbox, conf)
    env = {**os.environ, "HOOK_PROBE": "from-runtime"}
    with (c.host_bundle / "output").open("w") as out:
        proc = c.rt("run", "--bundle", c.bundle, c.id, stdout=out, stderr=out, capture_output=False, env=env)
    assert proc.returncode == 0, c.output()
    assert sandbox.host_path(log).read_text().split() == [
        "HOOK_PROBE=from-runtime",
        "HOOK_PROBE=explicit",
        "HOOK_PROBE=unset",
        "HOOK_PROBE=from-process",
        "HOOK_PROBE=explicit",
        "HOOK_PROBE=from-runtime",
    ]
    in_container = (c.host_bundle / "rootfs" / "tmp" / "hookenv").read_text().split()
    assert in_container == ["HOOK_PROBE=from-process", "HOOK_PROBE=unset"], in_container


# -- 5. a failing hook: one message, its class kept --------------------------------------------------


@pytest.mark.parametrize("stage", ["createContainer", "startContainer"])
def test_failing_container_hook_reports_once(sandbox: Sandbox, stage: str) -> None:
    conf = bundles.base_config()
    conf["process"]["args"] = ["true"]
    conf["hooks"] = {stage: [{"path": "/bin/false"}]}
    c = Container(sandbox, conf)
    rc, out = run_prepared(c)
    assert rc != 0
    if _is_oci_systemd():
        assert out.count(f"error running {stage} hook") == 1, out
        assert f"error running {stage} hook /bin/false: exit status 1" in out, out
    bundles.delete_container(sandbox, c.id)


def test_exec_failure_keeps_its_status_across_the_channel(sandbox: Sandbox) -> None:
    """exec's failure arrives as ExecFailedError (127), its message once. (The class mapping
    itself is pinned in tests/unit/test_idler_errors.py; this passed before the change too.)"""
    if not _is_oci_systemd():
        pytest.skip("runc's exec exits 255 here: 126/127 are podman's classes, which oci-systemd follows")
    c = start_sleeping(sandbox)
    missing = c.rt("exec", c.id, "/no/such/program")
    assert missing.returncode == 127, missing.stderr
    assert missing.stderr.count("no such file or directory") == 1, missing.stderr
    bundles.delete_container(sandbox, c.id)


# -- 7. startContainer hooks run as the process will (issue 14.3) ------------------------------------

HOOK_PROBE = "grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status > /tmp/hook-status"


@pytest.mark.parametrize("uid", [0, 1000])
def test_start_container_hook_has_only_the_process_privileges(sandbox: Sandbox, uid: int) -> None:
    """The image's "hook" checks what it could use against the host (CAP_DAC_READ_SEARCH for
    open_by_handle_at, CAP_SYS_ADMIN, uid 0): it must have exactly the process's."""
    conf = config("grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status")
    conf["process"]["user"] = {"uid": uid, "gid": uid}
    conf["process"]["noNewPrivileges"] = True
    conf["root"]["readonly"] = False
    conf["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["open_by_handle_at", "name_to_handle_at"], "action": "SCMP_ACT_ERRNO"}],
    }
    conf["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", HOOK_PROBE]}]}
    c = Container(sandbox, conf)
    rc, out = run_prepared(c)
    assert rc == 0, out
    process = status_fields(out)
    hook = status_fields((c.host_bundle / "rootfs" / "tmp" / "hook-status").read_text())
    assert hook["Uid"] == process["Uid"], (hook, process)
    assert hook["CapEff"] == process["CapEff"] and hook["CapBnd"] == process["CapBnd"], (hook, process)
    assert not int(hook["CapBnd"], 16) & cap_mask(["CAP_DAC_READ_SEARCH", "CAP_SYS_ADMIN"])
    assert hook["NoNewPrivs"] == "1" and hook["Seccomp"] == "2", hook
    bundles.delete_container(sandbox, c.id)


SHOCKER_SRC = Path(__file__).parent / "init" / "open-by-handle.c"


@pytest.fixture(scope="module")
def shocker(sandbox: Sandbox) -> Path:
    """The static open_by_handle_at probe, compiled once; host path."""
    out = sandbox.host_path(f"{bundles.INNER_WORKDIR}/open-by-handle")
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(SHOCKER_SRC)], check=True)
    return out


def test_start_container_hook_cannot_escape_by_file_handle(sandbox: Sandbox, shocker: Path) -> None:
    """Issue 14.3, the attack itself: the image's startContainer "hook" opens the bundle directory
    (outside its rootfs, on the same filesystem) by file handle and writes a marker there. With
    the idler's privileges (CAP_DAC_READ_SEARCH) it could; with the process's it must not."""
    conf = config("cat /tmp/probe")
    conf["root"]["readonly"] = False
    c = Container(sandbox, conf)
    handle = subprocess.run(
        [str(shocker), "encode", str(c.host_bundle)], capture_output=True, text=True, check=True
    ).stdout.split()
    shutil.copy2(shocker, c.host_bundle / "rootfs" / "bin" / "open-by-handle")
    probe = f"/bin/open-by-handle open {handle[0]} {handle[1]} escaped-marker > /tmp/probe"
    conf["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", probe]}]}
    (c.host_bundle / "config.json").write_text(json.dumps(conf))
    rc, out = run_prepared(c)
    assert rc == 0, out
    assert not (c.host_bundle / "escaped-marker").exists(), f"the hook wrote outside its rootfs: {out}"
    assert "open_by_handle_at: Operation not permitted" in out, out
    bundles.delete_container(sandbox, c.id)


def test_start_container_hook_still_runs_inside_the_container(sandbox: Sandbox) -> None:
    conf = config("cat /tmp/hook-ran")
    conf["root"]["readonly"] = False
    conf["hooks"] = {
        "startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/hook-ran; echo >> /tmp/hook-ran"]}
        ]
    }
    out = run(sandbox, conf)
    state = json.loads(out.strip().splitlines()[0])
    assert state["status"] in ("created", "running") and state["id"].startswith("test-"), out


# -- 6. idmapped mounts ------------------------------------------------------------------------------


def _idmap_source(sb: Sandbox, owners: dict[str, int]) -> str:
    """A directory in the sandbox's /tmp with one file per owner uid (and gid); its inner path."""
    inner = f"{bundles.INNER_WORKDIR}/idmap-src-{os.urandom(4).hex()}"
    host = sb.host_path(inner)
    host.mkdir(parents=True)
    for name, uid in owners.items():
        (host / name).write_text(name)
        os.chown(host / name, uid, uid)
    return inner


def _stat_all(dest: str) -> str:
    return f"for f in {dest}/*; do echo $(basename $f)=$(stat -c %u:%g $f); done"


def test_idmapped_mount_with_its_own_mapping(sandbox: Sandbox) -> None:
    """No user namespace: the mount's mapping shifts on-disk owners (containerID → hostID)."""
    src = _idmap_source(sandbox, {"root": 0, "user": 1234, "outside": 9000})
    conf = config(_stat_all("/plain") + "; " + _stat_all("/mapped") + "; touch /mapped/x || echo read-only")
    conf["mounts"] += [
        {"destination": "/plain", "type": "bind", "source": src, "options": ["bind"]},
        {
            "destination": "/mapped",
            "type": "bind",
            "source": src,
            "options": ["bind", "idmap", "ro"],
            "uidMappings": [{"containerID": 0, "hostID": 4000, "size": 2000}],
            "gidMappings": [{"containerID": 0, "hostID": 5000, "size": 2000}],
        },
    ]
    lines = [line for line in run(sandbox, conf).splitlines() if "=" in line or line == "read-only"]
    assert lines[:3] == ["outside=9000:9000", "root=0:0", "user=1234:1234"], lines
    # 9000 is outside the mapping: the kernel shows the overflow id.
    assert lines[3:6] == ["outside=65534:65534", "root=4000:5000", "user=5234:6234"], lines
    assert lines[6:] == ["read-only"], "the remount for `ro` applies to the idmapped mount"


def test_idmapped_mount_defaults_to_the_container_mapping(sandbox: Sandbox) -> None:
    """With a user namespace and no mapping on the mount, the container's applies (runtime-spec
    1.2): files owned by 0 and 1234 on disk are root's and 1234's inside, not nobody's."""
    host_id = 200000
    src = _idmap_source(sandbox, {"root": 0, "user": 1234})
    conf = config(_stat_all("/plain") + "; " + _stat_all("/mapped") + "; touch /mapped/made && echo made=ok")
    bundles.add_all_namespaces(conf)
    conf["linux"]["namespaces"].append({"type": "user"})
    conf["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    conf["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host_id, "size": 65536}]
    conf["root"]["readonly"] = False
    conf["mounts"] += [
        {"destination": "/plain", "type": "bind", "source": src, "options": ["bind"]},
        {"destination": "/mapped", "type": "bind", "source": src, "options": ["rbind", "ridmap"]},
    ]
    c = Container(sandbox, conf)
    rootfs = c.host_bundle / "rootfs"
    for path in [rootfs, *rootfs.rglob("*")]:
        os.lchown(path, host_id, host_id)
    rc, out = run_prepared(c)
    assert rc == 0, out
    got = out.split()
    assert got[:2] == ["root=65534:65534", "user=65534:65534"], got
    assert got[2:4] == ["root=0:0", "user=1234:1234"], got
    assert got[4] == "made=ok"
    made = sandbox.host_path(f"{src}/made").stat()
    assert (made.st_uid, made.st_gid) == (0, 0), "written through the idmapped mount as on-disk root"
    bundles.delete_container(sandbox, c.id)


def test_idmap_without_mapping_or_bind_is_refused(sandbox: Sandbox) -> None:
    src = _idmap_source(sandbox, {"f": 0})
    for mount in (
        {"destination": "/m", "type": "bind", "source": src, "options": ["bind", "idmap"]},
        {
            "destination": "/m",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 4000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 4000, "size": 1}],
        },
    ):
        conf = config("true")
        conf["mounts"].append(mount)
        c = Container(sandbox, conf)
        assert c.create().returncode == 1
        if _is_oci_systemd():
            # A SpecError raised in the idler, reported as one (protocol.error_from).
            assert "invalid config.json: mounts[" in c.output() and "idmap" in c.output(), c.output()
            no_trace_left(sandbox, c)
        bundles.delete_container(sandbox, c.id)


def test_features_list_idmap() -> None:
    from oci_systemd.runtime.features import features

    got = features()
    assert {"idmap", "ridmap"} <= set(got["mountOptions"])
    assert got["linux"]["mountExtensions"]["idmap"]["enabled"] is True
