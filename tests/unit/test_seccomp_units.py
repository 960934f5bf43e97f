# SPDX-License-Identifier: Apache-2.0
"""seccomp translation (pure) and filter building through libseccomp (not loaded)."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from oci_systemd.container import seccomp
from oci_systemd.container.seccomp import Rule
from oci_systemd.errors import OciSystemdError

if TYPE_CHECKING:
    from oci_systemd.container import config

PROFILE: config.Seccomp = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 38,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
    "flags": ["SECCOMP_FILTER_FLAG_LOG"],
    "syscalls": [
        {"names": ["read", "write", "no_such_syscall_xyz"], "action": "SCMP_ACT_ALLOW"},
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}],
        },
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"},
            ],
        },
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
                {"index": 1, "value": 5, "op": "SCMP_CMP_GT"},
            ],
        },
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["ptrace"], "action": "SCMP_ACT_TRACE"},
        {"names": ["kexec_load"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["reboot"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},  # same as default: skipped
        {"names": ["uname"], "action": "SCMP_ACT_LOG"},
        {"names": ["swapon"], "action": "SCMP_ACT_TRAP"},
        {"names": ["swapoff"], "action": "SCMP_ACT_KILL"},
        {"names": ["acct"], "action": "SCMP_ACT_KILL_THREAD"},
    ],
}


def test_translate() -> None:
    plan = seccomp.translate(PROFILE)
    assert plan.default_action == 0x00050000 | 38
    assert plan.arches == ["x86_64", "x86", "x32", "aarch64"]
    assert plan.attrs == [seccomp.SCMP_FLTATR_CTL_LOG]
    allow = seccomp.SCMP_ACT_ALLOW
    assert plan.rules == [
        Rule("read", allow, []),
        Rule("write", allow, []),
        Rule("no_such_syscall_xyz", allow, []),
        Rule("personality", allow, [(0, 4, 0, 0)]),
        Rule("personality", allow, [(0, 4, 8, 0)]),  # same index twice: two rules (OR)
        Rule("personality", allow, [(0, 4, 0xFFFFFFFF, 0)]),
        Rule("clone", allow, [(0, 7, 0x7E020000, 0), (1, 6, 5, 0)]),
        Rule("mkdir", 0x00050000 | errno.EPERM, []),
        Rule("ptrace", 0x7FF00000 | errno.EPERM, []),
        Rule("kexec_load", 0x80000000, []),
        Rule("uname", seccomp.SCMP_ACT_LOG, []),
        Rule("swapon", seccomp.SCMP_ACT_TRAP, []),
        Rule("swapoff", 0, []),
        Rule("acct", 0, []),
    ]


@pytest.mark.parametrize(
    ("profile", "match"),
    [
        ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown action"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}, "unknown architecture"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, "not supported"),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["read"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "op": "SCMP_CMP_X"}],
                    }
                ],
            },
            "unknown operator",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["read"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 6, "op": "SCMP_CMP_EQ"}],
                    }
                ],
            },
            "out of range",
        ),
    ],
)
def test_translate_errors(profile: config.Seccomp, match: str) -> None:
    with pytest.raises(OciSystemdError, match=match):
        seccomp.translate(profile)


def test_build_and_export_without_loading() -> None:
    filt = seccomp.build(seccomp.translate(PROFILE))
    try:
        assert filt.skipped == ["no_such_syscall_xyz"]
        with tempfile.TemporaryFile() as f:
            filt.export_bpf(f.fileno())
            size = os.fstat(f.fileno()).st_size
        assert size > 0 and size % 8 == 0  # struct sock_filter instructions
    finally:
        filt.release()


def _in_child(work: Callable[[], bytes]) -> bytes:
    """`work()` in a forked child with no_new_privs (a filter never outlives the child); its
    result, or the repr of what it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            from oci_systemd.container import linux

            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            out = work()
        except BaseException as e:
            out = repr(e).encode()
        os.write(w, out)
        os._exit(0)
    os.close(w)
    out = os.read(r, 1000)
    os.close(r)
    os.waitpid(pid, 0)
    return out


def test_apply_in_child() -> None:
    """Load a filter in a forked child: mkdir then fails with the configured errno."""

    def work() -> bytes:
        seccomp.apply(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}
                ],
            }
        )
        try:
            os.mkdir("/tmp/oci-systemd-seccomp-test-never")
            return b"created"
        except OSError as e:
            return str(e.errno).encode()

    assert _in_child(work) == str(errno.EROFS).encode()


NOTIFY_PROFILE: config.Seccomp = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "listenerPath": "/run/agent.sock",
    "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
        {"names": ["rmdir"], "action": "SCMP_ACT_LOG"},
    ],
}


def test_notify_rules_translate() -> None:
    assert seccomp.uses_notify(NOTIFY_PROFILE)
    assert not seccomp.uses_notify({**NOTIFY_PROFILE, "syscalls": NOTIFY_PROFILE["syscalls"][1:]})
    assert seccomp.translate(NOTIFY_PROFILE).rules[0] == Rule("mkdir", seccomp.SCMP_ACT_NOTIFY, [])


def test_notify_filter_without_a_hand_over_is_refused() -> None:
    with pytest.raises(OciSystemdError, match="listener"):
        seccomp.apply(NOTIFY_PROFILE)


def test_apply_hands_the_notify_fd_over_in_child() -> None:
    """Loading a NOTIFY filter gives hand_over the kernel's listener fd (and only then)."""

    def work() -> bytes:
        got: list[str] = []
        seccomp.apply(NOTIFY_PROFILE, lambda fd: got.append(os.readlink(f"/proc/self/fd/{fd}")))
        return repr(got).encode()

    assert _in_child(work) == b"['anon_inode:seccomp notify']"
