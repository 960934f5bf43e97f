# SPDX-License-Identifier: Apache-2.0
"""Removing a container's state directory: any tree a container could have left in it."""

from __future__ import annotations

import os
from pathlib import Path

from oci_systemd.runtime import state


def _deep_tree(top: Path, levels: int) -> None:
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("level-of-a-very-deep-tree", dir_fd=fd)
            deeper = os.open("level-of-a-very-deep-tree", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        with open(os.open("file", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as f:
            f.write("x")
    finally:
        os.close(fd)


def test_remove_tree_longer_than_path_max(tmp_path: Path) -> None:
    """300 levels of 25 characters: paths longer than PATH_MAX (the integration test goes
    1,100 deep, past Python's recursion limit, in the sandbox's throw-away /tmp; here a
    failure must leave a tree pytest's own cleanup can still remove)."""
    top = tmp_path / "cid"
    (top / "notify").mkdir(parents=True)
    _deep_tree(top / "notify", 300)
    state._remove_tree(os.fspath(top))
    assert not top.exists()


def test_remove_tree_never_follows_symlinks(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep").write_text("host data")
    top = tmp_path / "cid"
    (top / "notify" / "sub").mkdir(parents=True)
    (top / "notify" / "dir-link").symlink_to(host)
    (top / "notify" / "sub" / "file-link").symlink_to(host / "keep")
    (top / "link-top").symlink_to(host, target_is_directory=True)
    state._remove_tree(os.fspath(top))
    assert not top.exists()
    assert (host / "keep").read_text() == "host data"


def test_remove_tree_missing_is_fine(tmp_path: Path) -> None:
    state._remove_tree(os.fspath(tmp_path / "gone"))


def test_remove_tree_wide_and_deep(tmp_path: Path) -> None:
    top = tmp_path / "cid"
    for i in range(50):
        (top / f"d{i}" / "a" / "b").mkdir(parents=True)
        (top / f"d{i}" / "a" / "f").write_text("x")
        (top / f"f{i}").write_text("x")
    state._remove_tree(os.fspath(top))
    assert not top.exists()
