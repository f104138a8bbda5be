"""semsql.safe_open: a file opened beneath a root, whatever links lie on the way."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from semsql.safe_open import LeavesRoot, open_beneath


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with files, folders and links of every kind; outside/ beside it."""
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "sub" / "deeper" / "b.txt").write_text("b")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    links = {
        "up.txt": "sub/../a.txt",
        "sub/rel.txt": "../a.txt",
        "sub/abs.txt": str(root / "sub" / "deeper" / "b.txt"),
        "folder": "sub/deeper",
        "chain.txt": "up.txt",
        "physical.txt": "folder/../../a.txt",
        "sub/escape.txt": "../../outside/secret.txt",
        "absolute-escape.txt": str(outside / "secret.txt"),
        "outdir": str(outside),
        "loop": "loop",
        "dangling.txt": "nowhere.txt",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    os.mkfifo(root / "fifo")
    return root


def read(root: Path, name: str) -> str:
    fd = open_beneath(root, root / name)
    with open(fd, encoding="utf-8") as file:
        return file.read()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.txt", "a"),
        ("up.txt", "a"),
        ("sub/rel.txt", "a"),
        ("sub/abs.txt", "b"),
        ("folder/b.txt", "b"),
        ("chain.txt", "a"),
        ("physical.txt", "a"),  # '..' after a link goes up from where the link led
    ],
)
def test_links_that_stay_inside_are_followed(tree: Path, name: str, content: str) -> None:
    assert read(tree, name) == content


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sub/escape.txt", "a link leads outside {root} (to ../../outside/secret.txt)"),
        ("absolute-escape.txt", "a link leads outside {root} (to {outside}/secret.txt)"),
        ("outdir/secret.txt", "a link leads outside {root} (to {outside})"),
    ],
)
def test_links_that_leave_are_refused(tree: Path, name: str, message: str) -> None:
    outside = tree.parent / "outside"
    with pytest.raises(LeavesRoot) as refused:
        open_beneath(tree, tree / name)
    assert str(refused.value) == f"{tree / name}: " + message.format(root=tree, outside=outside)


def test_a_path_outside_the_root_is_refused(tree: Path) -> None:
    with pytest.raises(LeavesRoot, match="not inside"):
        open_beneath(tree, tree.parent / "outside" / "secret.txt")


def test_a_root_reached_through_a_link_works_under_either_name(tree: Path) -> None:
    alias = tree.parent / "alias"
    alias.symlink_to(tree)
    for root, path in ((alias, tree / "a.txt"), (tree, alias / "a.txt"), (alias, alias / "a.txt")):
        with open(open_beneath(root, path), encoding="utf-8") as file:
            assert file.read() == "a"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("loop", "Too many levels of symbolic links"),
        ("dangling.txt", "No such file or directory"),
        ("fifo", "not a regular file"),
        ("sub", "Is a directory"),
        ("a.txt/x", "Not a directory"),
    ],
)
def test_what_is_no_regular_file_is_an_os_error(tree: Path, name: str, error: str) -> None:
    with pytest.raises(OSError, match=error) as raised:
        open_beneath(tree, tree / name)
    assert raised.value.filename == str(tree / name)


def test_no_descriptor_is_left_open(tree: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    for name in ("a.txt", "folder/b.txt", "outdir/secret.txt", "loop", "sub"):
        with contextlib.suppress(OSError, LeavesRoot):
            os.close(open_beneath(tree, tree / name))
    assert set(os.listdir("/proc/self/fd")) == before
