# SPDX-License-Identifier: Apache-2.0
import os

import pytest

from oci_systemd.errors import ContainerExistsError, ContainerNotFoundError, InvalidIdError
from oci_systemd.runtime.state import (
    Record,
    Status,
    Store,
    derive_status,
    process_start_time,
    start_socket,
    validate_id,
)


@pytest.mark.parametrize("cid", ["a", "abc-DEF_1.2+3", "x" * 237, "7" * 64])
def test_valid_ids(cid: str) -> None:
    validate_id(cid)


@pytest.mark.parametrize(
    "cid", ["", ".", "..", "../x", "a/b", "/abs", "a b", "a\x00b", "é", "x" * 1025, "a:b"]
)
def test_invalid_ids(cid: str) -> None:
    with pytest.raises(InvalidIdError):
        validate_id(cid)


def _rec(**kw: object) -> Record:
    base: dict[str, object] = {"id": "c", "phase": "created", "pid": 1, "pid_start": 1}
    base.update(kw)
    return base  # type: ignore[return-value]


def test_status_created_vs_running() -> None:
    assert derive_status(_rec(), unit_state="active", alive=True) is Status.CREATED
    assert derive_status(_rec(phase="started"), unit_state="active", alive=True) is Status.RUNNING
    assert (
        derive_status(_rec(phase="started"), unit_state="active", alive=True, frozen=True) is Status.PAUSED
    )


@pytest.mark.parametrize("unit_state", [None, "inactive", "failed", "deactivating"])
def test_status_scope_gone_is_stopped(unit_state: str | None) -> None:
    assert derive_status(_rec(phase="started"), unit_state=unit_state, alive=True) is Status.STOPPED


def test_status_dead_init_is_stopped() -> None:
    assert derive_status(_rec(phase="started"), unit_state="active", alive=False) is Status.STOPPED


def test_status_creating_depends_on_creator() -> None:
    assert (
        derive_status(_rec(phase="creating", creator_pid=os.getpid()), unit_state=None, alive=False)
        is Status.CREATING
    )
    assert (
        derive_status(_rec(phase="creating", creator_pid=0), unit_state=None, alive=False) is Status.STOPPED
    )


def test_can_transitions() -> None:
    assert Status.CREATED.can_start() and not Status.RUNNING.can_start()
    assert Status.RUNNING.can_kill() and not Status.STOPPED.can_kill()
    assert Status.STOPPED.can_delete() and Status.CREATED.can_delete()
    assert (
        not Status.RUNNING.can_delete()
        and not Status.PAUSED.can_delete()
        and not Status.CREATING.can_delete()
    )


def test_process_start_time_self_and_gone() -> None:
    assert isinstance(process_start_time(os.getpid()), int)
    assert process_start_time(2**22 + 12345) is None


def test_store_claim_is_exclusive_and_remove_cleans(tmp_path: object) -> None:
    store = Store(str(tmp_path))
    fd = store.claim("c1")
    try:
        with pytest.raises(ContainerExistsError):
            store.claim("c1")
        store.write("c1", _rec(id="c1"))
    finally:
        os.close(fd)
    with store.locked("c1") as rec:
        assert rec["id"] == "c1"
    assert store.ids() == ["c1"]
    store.remove("c1")
    assert store.ids() == []
    with pytest.raises(ContainerNotFoundError), store.locked("c1"):
        pass


def test_a_file_under_the_root_is_no_container(tmp_path: object) -> None:
    """`--root ""` makes the cwd the root (as with runc): a file there named like the id is
    "container does not exist", not an internal error."""
    root = os.path.join(str(tmp_path), "root")
    os.makedirs(root)
    open(os.path.join(root, "x"), "w").close()
    with pytest.raises(ContainerNotFoundError), Store(root).locked("x"):
        pass
    with pytest.raises(ContainerNotFoundError), Store(os.path.join(root, "x")).locked("y"):
        pass  # a root that is a file


def test_store_rejects_bad_id_before_touching_fs(tmp_path: object) -> None:
    store = Store(os.path.join(str(tmp_path), "root"))
    with pytest.raises(InvalidIdError):
        store.claim("../escape")
    assert not os.path.exists(os.path.join(str(tmp_path), "root"))


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_state_files_are_root_only_whatever_the_umask(tmp_path: str, umask: int) -> None:
    """The record and the config hold the container's environment (issue 14.6)."""
    store = Store(os.path.join(tmp_path, "root"))
    old = os.umask(umask)
    try:
        fd = store.claim("c1")
        store.write("c1", Record(id="c1", phase="created"))
        store.write_config("c1", {"process": {"env": ["SECRET=x"]}})
    finally:
        os.umask(old)
    os.close(fd)
    for name in ("state.json", "config.json"):
        assert os.stat(os.path.join(store.dir("c1"), name)).st_mode & 0o777 == 0o600
    assert os.stat(store.root).st_mode & 0o777 == 0o711


def test_start_socket_is_start_sock_and_an_older_runtimes_notify_sock(tmp_path: object) -> None:
    """A container created by a runtime up to 0.1.0 waits on notify.sock: it is still found
    (state reads created, start connects), but start.sock wins when both exist."""
    d = str(tmp_path)
    assert start_socket(d) is None
    open(os.path.join(d, "notify.sock"), "w").close()
    assert start_socket(d) == os.path.join(d, "notify.sock")
    open(os.path.join(d, "start.sock"), "w").close()
    assert start_socket(d) == os.path.join(d, "start.sock")
