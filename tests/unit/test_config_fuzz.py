# SPDX-License-Identifier: Apache-2.0
"""Hostile config.json and container ids (issue 8, part 4), the parser's side.

Every generated config here is *invalid by the OCI runtime spec* (a wrong type, an
out-of-range number, a relative or `..` path where an absolute one is required, an unknown
enum value, a broken document), so parsing must end in SpecError, fast, and never in
another exception. Generated ids that are not runc-valid must be refused, and ids that are
accepted must be safe as a file name below the state root and inside a unit name.

HYPOTHESIS_PROFILE=fuzz runs 10,000 examples per test (40,000 in all); the default is 300.
tests/integration/test_hostile.py feeds a few hundred of the same configs to the real `create`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oci_systemd.errors import InvalidIdError, SpecError
from oci_systemd.runtime import spec, state
from oci_systemd.runtime.default_config import default_config
from oci_systemd.runtime.placement import scope_for

_PROFILES = {
    "config-fuzz-default": 300,
    "config-fuzz": 10_000,
}
for _name, _n in _PROFILES.items():
    settings.register_profile(
        _name,
        max_examples=_n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
PROFILE = settings.get_profile(
    "config-fuzz" if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else "config-fuzz-default"
)

# Parsing one document must never take long, whatever it holds.
PARSE_BUDGET_S = 1.0
NAME_MAX = 255
UNIT_NAME_MAX = 255  # systemd's UNIT_NAME_MAX is 256 including the NUL

DELETE = object()  # a mutation value: remove the key

U32_MAX = 2**32 - 1
HUGE_INTS = [-1, -(2**31), 2**32, 2**63, 2**64, 10**40, -(10**40)]
TRAVERSALS = [
    "..",
    "../x",
    "../../../etc",
    "rootfs/../..",
    "./x",
    "x/../../y",
    "relative/path",
    "",
    "~/x",
    "ünï/cødé",
    "💥/..",
]

# -- wrong values by kind ----------------------------------------------------------------

_unicode = st.text(min_size=1, max_size=40)
_long = st.integers(min_value=300, max_value=20_000).map(lambda n: "x" * n)
not_str = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
not_int = st.one_of(
    st.text(max_size=10),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
not_u32 = st.one_of(
    not_int, st.sampled_from(HUGE_INTS), st.integers(max_value=-1), st.integers(min_value=2**32)
)
not_bool = st.one_of(st.integers(), st.text(max_size=5), st.lists(st.booleans(), max_size=2))
not_list = st.one_of(
    st.integers(),
    st.text(max_size=10),
    st.booleans(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
not_obj = st.one_of(st.integers(), st.text(max_size=10), st.booleans(), st.lists(st.integers(), max_size=2))
list_with_non_str = st.lists(st.text(max_size=5), max_size=3).flatmap(
    lambda xs: not_str.map(lambda bad: [*xs, bad])
)
# Not absolute: relative, traversal, empty, unicode; or not a string at all; or with a NUL.
not_abs_path = st.one_of(
    st.sampled_from(TRAVERSALS),
    _unicode.filter(lambda s: not s.startswith("/")),
    not_str,
    st.text(max_size=10).map(lambda s: f"/{s}\0x"),
)
# Absolute but with ".." components: an escape attempt for a mount destination.
traversal_dest = st.one_of(
    st.sampled_from(["/..", "/../../etc", "/proc/../../..", "/a/../../b", "/x/.."]),
    st.lists(st.sampled_from(["..", "a", "etc", "ünï", "💥"]), min_size=1, max_size=6)
    .filter(lambda parts: ".." in parts)
    .map(lambda parts: "/" + "/".join(parts)),
)
bad_mount_dest = st.one_of(not_abs_path, traversal_dest)
unknown_word = st.one_of(st.sampled_from(["", "bogus", "CAP_", "pid ", "PID", "ünï", "x" * 500]), _unicode)

# -- where the wrong values go -------------------------------------------------------------

MOUNT_OK = {"destination": "/mnt", "type": "tmpfs", "source": "tmpfs"}


def _mount_with(**fields: Any) -> list[dict[str, Any]]:
    return [{**MOUNT_OK, **fields}]


def _ns(type_: Any, **extra: Any) -> list[dict[str, Any]]:
    return [{"type": "pid"}, {"type": type_, **extra}]


# (path into the config, strategy of invalid values for it).
MUTATIONS: list[tuple[tuple[str | int, ...], st.SearchStrategy[Any]]] = [
    (("ociVersion",), st.one_of(not_str, st.just(DELETE))),
    (("process",), not_obj),
    (("process", "args"), st.one_of(not_list, list_with_non_str)),
    (("process", "cwd"), st.one_of(not_abs_path, st.just(DELETE))),
    (("process", "env"), st.one_of(not_list, list_with_non_str)),
    (("process", "user"), not_obj),
    (("process", "user", "uid"), st.one_of(not_u32, st.just(DELETE))),
    (("process", "user", "gid"), st.one_of(not_u32, st.just(DELETE))),
    (("process", "user", "additionalGids"), st.one_of(not_list, st.lists(not_u32, min_size=1, max_size=3))),
    (("process", "user", "umask"), not_u32),
    (("process", "terminal"), not_bool),
    (("process", "noNewPrivileges"), not_bool),
    (
        ("process", "oomScoreAdj"),
        st.one_of(not_int, st.integers(min_value=1001), st.integers(max_value=-1001)),
    ),
    (("process", "capabilities"), not_obj),
    # Unknown names are a warning (runtime-spec 1.2, spec.capability_warnings); non-strings are not.
    (("process", "capabilities", "bounding"), st.one_of(not_list, list_with_non_str)),
    (("process", "capabilities", "effective"), not_str.map(lambda w: ["CAP_KILL", w])),
    (("process", "rlimits"), st.one_of(not_list, st.lists(not_obj, min_size=1, max_size=2))),
    (("process", "rlimits", 0, "type"), st.one_of(not_str, unknown_word)),
    (
        ("process", "rlimits", 0, "soft"),
        st.one_of(not_int, st.integers(max_value=-1), st.integers(min_value=2**64)),
    ),
    (("root",), not_obj),
    (("root", "path"), st.one_of(not_str, st.just(""), st.text(max_size=10).map(lambda s: f"{s}\0"))),
    (("root", "readonly"), not_bool),
    (("hostname",), not_str),
    (("mounts",), st.one_of(not_list, st.lists(not_obj, min_size=1, max_size=3))),
    (("mounts",), bad_mount_dest.map(lambda d: _mount_with(destination=d))),
    (("mounts",), st.just([{"type": "tmpfs", "source": "tmpfs"}])),
    (("mounts",), not_str.map(lambda t: _mount_with(type=t))),
    (("mounts",), st.one_of(not_list, list_with_non_str).map(lambda o: _mount_with(options=o))),
    (("linux",), not_obj),
    (("linux", "namespaces"), st.one_of(not_list, st.lists(not_obj, min_size=1, max_size=2))),
    (("linux", "namespaces"), unknown_word.map(_ns)),
    (
        ("linux", "namespaces"),
        st.sampled_from(["pid", "mount", "network"]).map(lambda t: [{"type": t}, {"type": t}]),
    ),
    (("linux", "namespaces"), not_abs_path.map(lambda p: _ns("network", path=p))),
    (
        ("linux", "uidMappings"),
        st.one_of(not_list, not_u32.map(lambda v: [{"containerID": 0, "hostID": 0, "size": v}])),
    ),
    (("linux", "gidMappings"), not_u32.map(lambda v: [{"containerID": v, "hostID": 0, "size": 1}])),
    (("linux", "resources"), not_obj),
    (("linux", "resources", "memory"), st.one_of(not_obj, not_int.map(lambda v: {"limit": v}))),
    (("linux", "resources", "cpu"), not_int.map(lambda v: {"shares": v})),
    (("linux", "resources", "pids"), not_int.map(lambda v: {"limit": v})),
    (("linux", "resources", "devices"), st.one_of(not_list, not_bool.map(lambda v: [{"allow": v}]))),
    (("linux", "maskedPaths"), st.one_of(not_list, list_with_non_str)),
    (("linux", "readonlyPaths"), st.one_of(not_list, list_with_non_str)),
    (("linux", "sysctl"), st.one_of(not_obj, not_str.map(lambda v: {"net.ipv4.ip_forward": v}))),
    (("linux", "cgroupsPath"), not_str),
    (("linux", "rootfsPropagation"), st.one_of(not_str, unknown_word)),
    (("linux", "seccomp"), st.one_of(not_obj, unknown_word.map(lambda w: {"defaultAction": w}))),
    (("hooks",), not_obj),
    (("hooks", "prestart"), st.one_of(not_list, not_abs_path.map(lambda p: [{"path": p}]))),
    (("hooks", "poststop"), st.just([{"args": ["x"]}])),
    (("annotations",), st.one_of(not_obj, not_str.map(lambda v: {"a": v}))),
]


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = doc
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        elif isinstance(node, list) and isinstance(key, int):
            while len(node) <= key:
                node.append({})
            node = node[key]
    last = path[-1]
    if value is DELETE:
        if isinstance(node, dict):
            node.pop(last, None)
    elif isinstance(node, dict) or (isinstance(node, list) and isinstance(last, int) and last < len(node)):
        node[last] = value


def _base() -> dict[str, Any]:
    # The strategies edit it into shapes config.Config refuses (that is what they check): as a
    # document before validation it is a dict of anything.
    conf = cast("dict[str, Any]", default_config(cgroup2=True))
    conf["process"]["terminal"] = False
    conf["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    return conf


@st.composite
def invalid_configs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A default config with 1-3 invalidating mutations; also returns what was done (for messages)."""
    conf = _base()
    chosen = draw(st.lists(st.sampled_from(range(len(MUTATIONS))), min_size=1, max_size=3, unique=True))
    done = []
    for i in chosen:
        path, values = MUTATIONS[i]
        value = draw(values)
        _set(conf, path, value)
        done.append(f"{'.'.join(map(str, path))}={'<deleted>' if value is DELETE else repr(value)[:60]}")
    return conf, "; ".join(done)


# Whole documents the JSON decoder itself must refuse, or that are not an object.
broken_documents = st.one_of(
    st.binary(max_size=64).filter(lambda b: not _is_json_object(b)),
    st.sampled_from(
        [
            b"",
            b"[]",
            b"null",
            b"42",
            b'"config"',
            b"{",
            b'{"ociVersion": "1.2.0",}',
            b"\xff\xfe{}",
            b'{"a": "\xc3\x28"}',
            b"[" * 100_000 + b"]" * 100_000,
            b'{"ociVersion": ' + b"9" * 50_000 + b"}",
            b'{"ociVersion": NaN}',
        ]
    ),
    json_scalars := st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)).map(
        lambda v: json.dumps(v).encode()
    ),
    st.lists(json_scalars, max_size=3).map(lambda v: json.dumps([x.decode() for x in v]).encode()),
)


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, RecursionError):
        return False


def _parse_must_refuse(conf: dict[str, Any], what: str) -> SpecError:
    t0 = time.monotonic()
    try:
        spec.parse(copy.deepcopy(conf))
    except SpecError as exc:
        elapsed = time.monotonic() - t0
        assert elapsed < PARSE_BUDGET_S, f"{what}: parsing took {elapsed:.2f}s"
        assert str(exc).startswith("invalid config.json"), str(exc)
        assert "\n" not in exc.message.strip(), exc.message
        return exc
    raise AssertionError(f"invalid config accepted: {what}")


@PROFILE
@given(invalid_configs())
def test_invalid_configs_give_spec_error(case: tuple[dict[str, Any], str]) -> None:
    conf, what = case
    _parse_must_refuse(conf, what)


_TMP = tempfile.TemporaryDirectory(prefix="config-fuzz-")


@PROFILE
@given(invalid_configs(), st.sampled_from(["json", "ensure_ascii", "indent"]))
def test_invalid_configs_through_load(case: tuple[dict[str, Any], str], style: str) -> None:
    """The same through spec.load(): what `create` reads from the bundle."""
    conf, what = case
    try:
        text = json.dumps(
            conf, ensure_ascii=style == "ensure_ascii", indent=2 if style == "indent" else None
        )
    except ValueError:
        return
    bundle = Path(_TMP.name)
    (bundle / "config.json").write_bytes(text.encode("utf-8", "surrogatepass"))
    t0 = time.monotonic()
    with pytest.raises(SpecError):
        spec.load(bundle)
    assert time.monotonic() - t0 < PARSE_BUDGET_S, what


@PROFILE
@given(broken_documents)
def test_broken_documents_give_spec_error(data: bytes) -> None:
    bundle = Path(_TMP.name)
    (bundle / "config.json").write_bytes(data)
    t0 = time.monotonic()
    with pytest.raises(SpecError) as info:
        spec.load(bundle)
    assert time.monotonic() - t0 < PARSE_BUDGET_S
    assert "config.json" in str(info.value)


# -- container ids -------------------------------------------------------------------------

_RUNC_ID = re.compile(r"[A-Za-z0-9_+\-.]+")

bad_ids = st.one_of(
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "../x",
            "x/..",
            "a/b",
            "/abs",
            "x\n",
            "x\0y",
            " x",
            "x ",
            "ünï",
            "💥",
            "-" * 2000,
            "a" * 1025,
            "a" * 100_000,
        ]
    ),
    st.text(min_size=1, max_size=50).filter(lambda s: not _RUNC_ID.fullmatch(s)),
    st.text(alphabet="abc./", min_size=1, max_size=12).filter(lambda s: "/" in s or s in (".", "..")),
    st.from_regex(r"\A[a-z]{1,8}\n\Z"),
)


def _validators() -> list[Any]:
    return [state.validate_id, spec.validate_container_id]


@PROFILE
@given(bad_ids)
def test_bad_ids_are_refused(cid: str) -> None:
    for validate in _validators():
        with pytest.raises(InvalidIdError):
            validate(cid)


@PROFILE
@given(
    st.one_of(
        st.text(max_size=300),
        st.from_regex(r"\A[A-Za-z0-9_+\-.]{1,400}\n?\Z"),
        st.tuples(st.sampled_from("a+-."), st.integers(1, 1100)).map(lambda t: t[0] * t[1]),
    )
)
def test_accepted_ids_are_safe_names(cid: str) -> None:
    """Whatever an id is, if validate_id lets it through it is one plain, bounded file name and
    fits in a unit name: validation must happen before anything touches the filesystem."""
    try:
        state.validate_id(cid)
    except InvalidIdError:
        return
    assert _RUNC_ID.fullmatch(cid), f"accepted {cid!r}"
    assert cid not in (".", "..")
    root = "/run/oci-systemd"
    path = os.path.normpath(os.path.join(root, cid))
    assert os.path.dirname(path) == root and os.path.basename(path) == cid
    assert len(cid.encode()) <= NAME_MAX, f"accepted an id of {len(cid)} chars: longer than NAME_MAX"
    unit, _slice = scope_for(cid, None)
    assert len(unit) <= UNIT_NAME_MAX, f"accepted an id whose unit name has {len(unit)} chars"


def test_id_examples() -> None:
    """The cases the property tests are about, spelled out."""
    for cid in ("abc\n", "a" * 1024):
        with pytest.raises(InvalidIdError):
            state.validate_id(cid)
    # runc-valid but 400 characters once escaped for the unit name: refused, or given a unit
    # name that fits (a hashed one, say).
    try:
        state.validate_id("+" * 100)
    except InvalidIdError:
        pass
    else:
        assert len(scope_for("+" * 100, None)[0]) <= UNIT_NAME_MAX
    for cid in ("abc", "a.b-c_d+e", "x" * 64):
        state.validate_id(cid)
