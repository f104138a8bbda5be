"""Open a file for reading only where it lies beneath a root folder, links included.

`open_beneath(root, path)` walks `path` one name at a time from a descriptor of the root: each
folder is opened with O_NOFOLLOW relative to its parent's descriptor, symbolic links are read
and resolved by hand, and `..` goes back up the folders walked, never above the root. What is
opened is therefore beneath the root at the moment it is opened, whatever is renamed or
swapped for a link meanwhile, and nothing outside the root is ever opened. (Opening first and
checking /proc/self/fd/N afterwards would open outside files before refusing them, and a
device's open can act; openat2's RESOLVE_BENEATH does this walk in the kernel, but Python
does not expose it.) Links that stay inside are followed, as the ingest walk follows them.

Hard links are not seen: a hard link inside the root to a file outside it is that file. The
worker's SHA-256 check is what catches a file changed after ingest, whichever way it changed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque

_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS
# O_PATH opens a folder for walking without read permission on it, as a path lookup does.
_FOLDER = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO cannot hang


class LeavesRoot(Exception):
    """The path, or a link on it, leads outside the root."""


class NotRegularFile(Exception):
    """The path names a FIFO, a device, a folder...: nothing that is read as a file."""


class OverLimit(Exception):
    """The file holds more bytes than the reader takes."""

    def __init__(self, size: int, *, grew: bool) -> None:
        super().__init__(f"{size} bytes")
        self.size = size
        """Its size when opened, or, where it grew while being read, what was read."""
        self.grew = grew


def read_beneath(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None, max_bytes: int
) -> bytes:
    """The bytes of the regular file at `path`, opened beneath `root` when one is given (never
    blocking on a FIFO), at most `max_bytes` of them. Raises LeavesRoot, NotRegularFile,
    OverLimit, or OSError as open() and read() would."""
    fd = open_beneath(root, path) if root is not None else os.open(path, _FILE & ~os.O_NOFOLLOW)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise NotRegularFile(os.fspath(path))
        if status.st_size > max_bytes:
            raise OverLimit(status.st_size, grew=False)
        with open(fd, "rb", closefd=False) as file:
            # read(n) allocates n bytes first: ask for what the file holds, and one more
            data = file.read(min(status.st_size, max_bytes) + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise OverLimit(len(data), grew=True)
    return data


def open_beneath(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> int:
    """A descriptor of the regular file at `path`, opened read-only, which lies beneath
    `root`. Raises LeavesRoot, or OSError as open() would (not found, not a regular file,
    permission, too many links)."""
    root_text = os.path.abspath(root)
    root_real = os.path.realpath(root_text)
    target = os.path.abspath(path)
    parts = _beneath(target, root_text, root_real)
    if parts is None:
        # Named through another route (a manifest's /data/... for a root of ~/Pictures ->
        # /data): find which file beneath the root that is, then walk to it from the root.
        parts = _beneath(os.path.realpath(target), root_real)
        if parts is None:
            raise LeavesRoot(f"{target}: not inside {root_text}")
    try:
        root_fd = os.open(root_text, _FOLDER)
        try:
            return _walk(root_fd, deque(parts), root_text, root_real, target)
        finally:
            os.close(root_fd)
    except OSError as error:
        if error.filename == target:
            raise
        raise OSError(error.errno, error.strerror, target) from None  # the whole path, not a part


def _beneath(path: str, *roots: str) -> list[str] | None:
    """The names of `path` below the first of `roots` it starts with (by name, not resolved)."""
    names = _names(path)
    for root in roots:
        prefix = _names(root)
        if names[: len(prefix)] == prefix:
            return names[len(prefix) :]
    return None


def _names(path: str) -> list[str]:
    return [name for name in path.split("/") if name not in ("", ".")]


def _walk(root_fd: int, pending: deque[str], root_text: str, root_real: str, shown: str) -> int:
    folders = [root_fd]  # descriptors of the folders walked through; folders[0] is the root's
    changes = 0  # links followed, and entries that changed under us: bounded, as the kernel's
    link = ""  # the last link followed; only links bring '..' into the walk (abspath took the rest)
    try:
        while pending:
            name = pending.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if len(folders) == 1:
                    raise LeavesRoot(f"{shown}: a link leads outside {root_text} (to {link})")
                os.close(folders.pop())
                continue
            last = not any(rest not in ("", ".") for rest in pending)
            here = folders[-1]
            found = os.stat(name, dir_fd=here, follow_symlinks=False)
            if stat.S_ISLNK(found.st_mode):
                changes = _count(changes, shown)
                try:
                    link = os.readlink(name, dir_fd=here)
                except OSError as error:
                    if error.errno != errno.EINVAL:  # EINVAL: no longer a link; look again
                        raise
                    pending.appendleft(name)
                    continue
                if link.startswith("/"):
                    inside = _beneath(link, root_text, root_real)
                    if inside is None:
                        raise LeavesRoot(f"{shown}: a link leads outside {root_text} (to {link})")
                    for fd in folders[1:]:
                        os.close(fd)
                    del folders[1:]
                    pending.extendleft(reversed(inside))
                else:
                    pending.extendleft(reversed(link.split("/")))
                continue
            if stat.S_ISDIR(found.st_mode):
                if last:
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)
                opened = _open_same(name, here, _FOLDER | os.O_NOFOLLOW, found)
            elif not last:
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), shown)
            elif not stat.S_ISREG(found.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", shown)
            else:
                opened = _open_same(name, here, _FILE, found)
            if opened is None:  # swapped between the look and the open: look again
                changes = _count(changes, shown)
                pending.appendleft(name)
                continue
            if last:
                return opened
            folders.append(opened)
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown)
    finally:
        for fd in folders[1:]:
            os.close(fd)


def _open_same(name: str, folder: int, flags: int, seen: os.stat_result) -> int | None:
    """`name` opened without following a link, if it is still the entry that was looked at."""
    try:
        fd = os.open(name, flags, dir_fd=folder)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):  # now a link
            return None
        raise
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        return None
    return fd


def _count(changes: int, shown: str) -> int:
    if changes >= _MAX_LINKS:
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), shown)
    return changes + 1
