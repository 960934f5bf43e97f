# SPDX-License-Identifier: Apache-2.0
"""Property tests: whatever config.json holds, parsing ends in a Spec or a SpecError, nothing else.

Mutations start from the default config (so most of the document stays valid and the parser
gets deep) and replace, delete or add values anywhere in it. HYPOTHESIS_PROFILE=fuzz runs
10,000 examples per test instead of 500.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oci_systemd.errors import SpecError
from oci_systemd.runtime import resources, spec
from oci_systemd.runtime.default_config import default_config

if TYPE_CHECKING:
    from oci_systemd.container import config

settings.register_profile(
    "spec-default", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "spec-default")
PROFILE = settings.get_profile(_PROFILE if _PROFILE in ("spec-default", "fuzz") else "spec-default")

BASES = [default_config(cgroup2=True), default_config(rootless=True, cgroup2=False)]

# Values chosen to hit the edges: wrong types, int boundaries, unicode, NULs, traversal.
EDGE_INTS = [0, -1, 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, -(2**63) - 1, 2**64 - 1, 2**64, 10**40]
EDGE_STRS = [
    "",
    "/",
    "..",
    "../../etc",
    "/../../etc/shadow",
    "/proc/../../..",
    "rootfs/../../",
    "a\0b",
    "\udcff",
    "ünï©ødé",
    "💥",
    "RLIMIT_NOFILE",
    "CAP_SYS_ADMIN",
    "user",
    "SCMP_ACT_NOTIFY",
    "x" * 5000,
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(EDGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(EDGE_STRS),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


# Paths into fields that exist only in richer configs, so mutations reach their parsers too.
EXTRA_FIELDS: list[tuple[tuple[Any, ...], Any]] = [
    (("hooks",), {"prestart": [{"path": "/bin/true", "timeout": 1}]}),
    (
        ("linux", "seccomp"),
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO"}]},
    ),
    (("linux", "uidMappings"), [{"containerID": 0, "hostID": 1000, "size": 1}]),
    (("linux", "devices"), [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229}]),
    (("linux", "resources", "memory"), {"limit": 100, "swap": 200}),
    (("linux", "resources", "cpu"), {"shares": 1024, "quota": 1000, "cpus": "0-1"}),
    (
        ("linux", "resources", "blockIO"),
        {"weight": 100, "throttleReadBpsDevice": [{"major": 8, "minor": 0}]},
    ),
    (("linux", "resources", "unified"), {"memory.max": "max"}),
    (("linux", "timeOffsets"), {"boottime": {"secs": 1}}),
    (("process", "scheduler"), {"policy": "SCHED_OTHER"}),
    (("process", "ioPriority"), {"class": "IOPRIO_CLASS_BE"}),
    (("annotations",), {"org.systemd.property.TimeoutStopSec": "5"}),
    (("mounts", 0, "uidMappings"), [{"containerID": 0, "hostID": 0, "size": 1}]),
]


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    config: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(BASES)))
    for path, value in draw(st.lists(st.sampled_from(EXTRA_FIELDS), max_size=3)):
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
        if isinstance(node, dict):
            node[path[-1]] = copy.deepcopy(value)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(config)[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = config
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "edge", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=12))] = draw(json_values)
        elif action == "edge":
            parent[path[-1]] = draw(st.one_of(st.sampled_from(EDGE_INTS), st.sampled_from(EDGE_STRS)))
        else:
            parent[path[-1]] = draw(json_values)
    return config


def _parse_or_spec_error(raw: object) -> config.Config | None:
    try:
        return spec.parse(raw)
    except SpecError as e:
        assert e.message.startswith("invalid config.json")
        return None


@settings(PROFILE)
@given(mutated_configs())
def test_mutated_config_parses_or_raises_spec_error(cfg: dict[str, Any]) -> None:
    s = _parse_or_spec_error(cfg)
    if s is None:
        return
    # What parses must be safe to act on, read the way the runtime and the idler read it (a
    # null is an absent key).
    for m in s.get("mounts") or ():
        assert m["destination"].startswith("/") and ".." not in m["destination"].split("/")
        assert "\0" not in m["destination"]
    if (p := s.get("process")) is not None:
        assert p["args"] and p["cwd"].startswith("/")
        user = p.get("user")
        assert user is None or 0 <= user["uid"] < 2**32
    if (linux := s.get("linux")) is not None:
        types = [ns["type"] for ns in linux.get("namespaces") or ()]
        assert len(types) == len(set(types)) and set(types) <= set(spec.NAMESPACE_TYPES)
        # The resource mapping must not fail in an unexpected way either.
        with contextlib.suppress(SpecError):
            resources.scope_properties(
                linux.get("resources"), s.get("annotations") or {}, block_device=lambda _a, _b: "/dev/x"
            )


@settings(PROFILE)
@given(json_values)
def test_arbitrary_json_parses_or_raises_spec_error(raw: object) -> None:
    _parse_or_spec_error(raw)
    if isinstance(raw, dict):
        _parse_or_spec_error({"ociVersion": "1.2.0", **raw})


@settings(PROFILE)
@given(
    st.one_of(
        st.text(max_size=40), st.sampled_from(["@t 1", "@as ['a'", "[[[", "uint64", "'\\", "@a", "1e400"])
    )
)
def test_annotation_values_parse_or_raise_spec_error(text: str) -> None:
    try:
        resources.parse_property_annotation("org.systemd.property.TimeoutStopSec", text)
        resources.parse_property_annotation("org.systemd.property.Description", text)
    except SpecError:
        pass


@settings(PROFILE, max_examples=min(PROFILE.max_examples, 200))
@given(st.binary(max_size=200))
def test_load_of_arbitrary_bytes(tmp_path_factory: Any, data: bytes) -> None:
    bundle: Path = tmp_path_factory.mktemp("bundle")
    (bundle / "config.json").write_bytes(data)
    with contextlib.suppress(SpecError):
        spec.load(bundle)


def test_config_round_trip_through_json() -> None:
    for base in BASES:
        assert spec.parse(json.loads(json.dumps(base))) == spec.parse(base)
