import json, os, subprocess
import bundles
from test_lifecycle import Container
from test_environment import run_prepared

def test_probe(sandbox):
    lim = sandbox.run(["sh", "-c", "ulimit -l; ulimit -Hl"], capture_output=True, text=True).stdout.split()
    print("memlock", lim)
    conf = bundles.base_config()
    conf["ociVersion"] = "1.0.2"
    v = int(lim[1]) * 1024 if lim[1] != "unlimited" else 2**64 - 1
    conf["process"]["rlimits"] = [{"type": "RLIMIT_MEMLOCK", "soft": v, "hard": v}]
    conf["process"]["cwd"] = "/work/deep/dir"
    conf["process"]["user"] = {"uid": 1000, "gid": 1000}
    conf["process"]["env"] = [e for e in conf["process"]["env"] if not e.startswith("HOME=")]
    conf["process"]["args"] = ["sh", "-c", "echo pwd=$(pwd) home=$HOME owner=$(stat -c %u:%g:%a /work/deep/dir); cat /tmp/hookenv; grep -E '^(CapEff|Uid)' /tmp/hookstatus; grep -E '^(CapEff|Uid)' /proc/self/status"]
    conf["root"]["readonly"] = False
    conf["process"]["capabilities"]["bounding"].append("CAP_UNKNOWN")
    conf["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo PROBE=${HOOK_PROBE:-unset} > /tmp/hookenv; grep -E '^(CapEff|Uid)' /proc/self/status > /tmp/hookstatus"]}],
                     "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo CR=${HOOK_PROBE:-unset} >&2"]}]}
    c = Container(sandbox, conf)
    out = c.host_bundle / "output"
    with out.open("w") as f:
        p = c.rt("run", "--bundle", c.bundle, c.id, stdout=f, stderr=f, capture_output=False, env={**os.environ, "HOOK_PROBE": "fromruntime"})
    print("RC", p.returncode, out.read_text())
    bundles.delete_container(sandbox, c.id)
    assert False
