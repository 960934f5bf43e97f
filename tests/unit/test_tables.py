# SPDX-License-Identifier: Apache-2.0
"""One table per fact: what spec validation accepts, what the container side implements and what
`oci-systemd features` reports are the same names (issue 18, step 4).

For each enum field of config.json the candidates are every name any of the three knows, plus
names that once drifted and a bogus one; for each, spec accepts it ⇔ the implementing table has
it ⇔ features reports it.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from oci_systemd.container import abi, linux, mounts, namespaces, process, seccomp
from oci_systemd.errors import OciSystemdError, SpecError
from oci_systemd.runtime import features, spec
from oci_systemd.runtime.spec import hooks as spec_hooks

if TYPE_CHECKING:
    from oci_systemd.container.config import Capabilities

FEATURES = features.features()
BOGUS = "NOT_A_NAME"


def _accepts(config: dict[str, Any]) -> bool:
    try:
        spec.parse(config)
    except SpecError:
        return False
    return True


def _seccomp_config(**profile: Any) -> dict[str, Any]:
    rule = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}
    base = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock", "syscalls": [rule]}
    return {
        "ociVersion": "1.2.0",
        "linux": {"namespaces": [{"type": "mount"}], "seccomp": {**base, **profile}},
    }


def _with_rule(**rule: Any) -> dict[str, Any]:
    return _seccomp_config(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", **rule}])


def _process_config(**fields: Any) -> dict[str, Any]:
    return {"ociVersion": "1.2.0", "process": {"args": ["sh"], "cwd": "/", **fields}}


def _namespaces_config(name: str) -> dict[str, Any]:
    types = ["mount"] if name == "mount" else ["mount", name]
    return {"ociVersion": "1.2.0", "linux": {"namespaces": [{"type": t} for t in types]}}


# (field, config using the name, the implementing table, what features reports or None)
FIELDS: list[tuple[str, Callable[[str], dict[str, Any]], Collection[str], list[str] | None]] = [
    (
        "seccomp action",
        lambda n: _with_rule(action=n),
        seccomp.ACTIONS,
        FEATURES["linux"]["seccomp"]["actions"],
    ),
    (
        "seccomp operator",
        lambda n: _with_rule(args=[{"index": 0, "value": 1, "op": n}]),
        seccomp.OPERATORS,
        FEATURES["linux"]["seccomp"]["operators"],
    ),
    (
        "seccomp flag",
        lambda n: _seccomp_config(flags=[n]),
        seccomp.FLAGS,
        FEATURES["linux"]["seccomp"]["supportedFlags"],
    ),
    (
        "seccomp known flag",
        lambda n: _seccomp_config(flags=[n]),
        seccomp.FLAGS,
        FEATURES["linux"]["seccomp"]["knownFlags"],
    ),
    (
        "seccomp architecture",
        lambda n: _seccomp_config(architectures=[n]),
        seccomp.ARCHITECTURES,
        FEATURES["linux"]["seccomp"]["archs"],
    ),
    ("namespace", _namespaces_config, namespaces.NAMESPACE_FLAGS, FEATURES["linux"]["namespaces"]),
    (
        "rlimit",
        lambda n: _process_config(rlimits=[{"type": n, "soft": 1, "hard": 1}]),
        abi.RLIMITS,
        None,
    ),
    ("scheduler policy", lambda n: _process_config(scheduler={"policy": n}), abi.SCHED_POLICIES, None),
    (
        "scheduler flag",
        lambda n: _process_config(scheduler={"policy": "SCHED_OTHER", "flags": [n]}),
        abi.SCHED_FLAGS,
        None,
    ),
    ("I/O priority class", lambda n: _process_config(ioPriority={"class": n}), abi.IOPRIO_CLASSES, None),
    (
        "personality domain",
        lambda n: {"ociVersion": "1.2.0", "linux": {"personality": {"domain": n}}},
        abi.PERSONALITY_DOMAINS,
        None,
    ),
    (
        "rootfs propagation",
        lambda n: {
            "ociVersion": "1.2.0",
            "linux": {"namespaces": [{"type": "mount"}], "rootfsPropagation": n},
        },
        mounts.PROPAGATION_FLAGS,
        None,
    ),
]

# Names that drifted before the tables were shared (issue 18's review).
DRIFTED = {
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    "SCMP_ACT_NOTIFY",
}


@pytest.mark.parametrize(("what", "config_with", "table", "reported"), FIELDS, ids=[f[0] for f in FIELDS])
def test_spec_accepts_what_is_implemented_and_reported(
    what: str,
    config_with: Callable[[str], dict[str, Any]],
    table: Collection[str],
    reported: list[str] | None,
) -> None:
    candidates = {*table, *(reported or ()), *DRIFTED, BOGUS}
    for name in sorted(candidates):
        implemented = name in table
        assert _accepts(config_with(name)) == implemented, f"{what} {name}: spec and implementation disagree"
        if reported is not None:
            assert (name in reported) == implemented, f"{what} {name}: features and implementation disagree"
    if reported is not None:
        assert reported == sorted(reported) and len(reported) == len(set(reported))


def test_spec_refuses_a_bogus_name_with_its_message() -> None:
    with pytest.raises(
        SpecError, match=r'linux\.seccomp\.architectures\[0\]: unknown seccomp architecture "NOT'
    ):
        spec.parse(_seccomp_config(architectures=[BOGUS]))


def test_the_drift_found_in_review_is_gone() -> None:
    """spec accepted SCMP_ARCH_M68K/SH/SHEB and WAIT_KILLABLE_RECV that seccomp.py refused;
    features left out lazytime, nosymfollow, tmpcopyup and SCMP_ACT_NOTIFY, all implemented."""
    for arch in ("SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB"):
        profile = _seccomp_config(architectures=[arch])["linux"]["seccomp"]
        spec.parse(_seccomp_config(architectures=[arch]))
        assert seccomp.translate(profile).arches == [arch.removeprefix("SCMP_ARCH_").lower()]
        assert arch in FEATURES["linux"]["seccomp"]["archs"]
    flag = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
    with pytest.raises(SpecError, match="unknown seccomp flag"):
        spec.parse(_seccomp_config(flags=[flag]))
    with pytest.raises(OciSystemdError, match="not supported"):
        seccomp.translate(_seccomp_config(flags=[flag])["linux"]["seccomp"])
    assert flag not in FEATURES["linux"]["seccomp"]["knownFlags"]
    assert {"lazytime", "nosymfollow", "tmpcopyup"} <= set(FEATURES["mountOptions"])
    assert "SCMP_ACT_NOTIFY" in FEATURES["linux"]["seccomp"]["actions"]


def test_features_mount_options_are_the_ones_mounts_gives_a_meaning() -> None:
    """Each reported option is taken by mounts.parse_options (never passed on as filesystem
    data), and none of those it refuses is reported."""
    for option in FEATURES["mountOptions"]:
        parsed = mounts.parse_options([option])
        assert parsed.data == "", option
    assert mounts.parse_options([features.TMPCOPYUP]).copy_up
    assert not set(FEATURES["mountOptions"]) & mounts.UNSUPPORTED_OPTIONS
    assert mounts.parse_options(["size=64k"]).data == "size=64k"


def test_capabilities_one_table() -> None:
    """spec accepts any name (a warning, runtime-spec 1.2); the known ones are abi's, which
    process.cap_mask applies and features reports."""
    assert FEATURES["linux"]["capabilities"] == sorted(abi.CAPABILITIES)
    assert tuple(abi.CAPABILITIES) == spec.CAPABILITY_NAMES
    assert [abi.CAPABILITIES[n] for n in spec.CAPABILITY_NAMES] == list(range(len(abi.CAPABILITIES)))
    for name in abi.CAPABILITIES:
        caps: Capabilities = {"bounding": [name]}
        assert spec.capability_warnings(caps, last_cap=40) == [], name
        assert process.cap_mask([name], last=40) == 1 << abi.CAPABILITIES[name]
    assert spec.capability_warnings({"bounding": ["CAP_" + BOGUS]}, last_cap=40)
    assert _accepts(_process_config(capabilities={"bounding": ["CAP_" + BOGUS]}))


def test_hooks_are_the_stages_spec_checks() -> None:
    assert FEATURES["hooks"] == list(spec_hooks.STAGES)
    config = _process_config()
    for stage in spec_hooks.STAGES:
        bad = copy.deepcopy(config)
        bad["hooks"] = {stage: [{"path": "relative"}]}
        with pytest.raises(SpecError, match=rf"hooks\.{stage}\[0\]\.path"):
            spec.parse(bad)


def test_abi_values_are_the_kernels() -> None:
    """abi.py's numbers equal linux.py's constants of the same kernel names (both from uapi)."""
    for name, value in (*abi.IOPRIO_CLASSES.items(), *abi.SCHED_POLICIES.items(), *abi.SCHED_FLAGS.items()):
        assert getattr(linux, name) == value, name
    assert abi.PERSONALITY_DOMAINS == {"LINUX": linux.PER_LINUX, "LINUX32": linux.PER_LINUX32}
    assert set(abi.NAMESPACE_TYPES) == set(namespaces.NAMESPACE_FLAGS)
    assert set(abi.ROOTFS_PROPAGATIONS) == set(mounts.PROPAGATION_FLAGS)


def test_spec_reads_the_tables_without_ctypes() -> None:
    """The tables spec reads are importable without ctypes (~5 ms on create): abi.py imports
    nothing, seccomp.py imports ctypes only to build a filter. (spec.seccomp, which reads
    seccomp.py's tables, is imported when a config has a filter.)"""
    code = (
        "import sys\nimport oci_systemd.runtime.spec, oci_systemd.runtime.spec.seccomp\n"
        "print(' '.join(sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    loaded = set(out.stdout.split())
    assert {"oci_systemd.container.abi", "oci_systemd.container.seccomp"} <= loaded
    assert "ctypes" not in loaded and "oci_systemd.container.linux" not in loaded
