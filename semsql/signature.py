"""A local file's stat signature: what lets a re-ingest skip an unchanged file unread.

The signature is the file's size, st_mtime_ns, st_ctime_ns and st_ino, and the same of each
XMP sidecar beside it (semsql.sidecars), taken before the file is read. A re-ingest that finds
every field as its asset recorded skips the file as "unchanged" without opening it.

Why these fields: size and mtime are what a normal edit changes. st_ino changes when a file is
replaced by another (a save through a temporary file and rename, rsync, cp over a deleted one),
even where the mtime was kept (rsync -a, cp -p). st_ctime changes on every write, rename and
utime and cannot be set back from user space, so a file rewritten in place with its old size and
its mtime restored (os.utime, touch -r) is caught too. st_dev is left out: its number can
change across reboots and remounts (NFS, USB disks, btrfs), which would only make a re-ingest
read everything once more. Changing ctime alone (chmod, chown, a hard link, xattrs) costs a
read and a SHA-256, which then finds the file unchanged.

A file whose ctime is within RACY_NS of the moment it is stat'ed is given no signature (as git
treats "racily clean" index entries): a write in the same clock tick as the stat could leave
every field as it was, so such a file is read again next time, and recorded then.

What it cannot see: content changed without the kernel's knowledge (a disk written under the
file system, a clock set back to the old ctime, a file system that fakes its ctime). Tools that
keep such trees should not rely on a stat-only re-ingest.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

from semsql.sidecars import sidecar_names

VERSION = 1
"""Bumped when what probing stores changes, so that every file is read again once."""

RACY_NS = 2_000_000_000
"""Files changed this recently are not given a signature (2 s: FAT's mtime granularity)."""


def _fields(info: os.stat_result) -> list[int]:
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


def file_signature(path: Path) -> dict[str, Any] | None:
    """The signature of `path` and its sidecars, or None where it cannot be trusted (the file
    cannot be stat'ed, is no regular file, or one of them changed just now)."""
    now = time.time_ns()
    try:
        info = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or now - info.st_ctime_ns < RACY_NS:
        return None
    sidecars: list[list[Any]] = []
    for name in sidecar_names(path):
        try:
            seen = os.lstat(path.with_name(name))
        except OSError:
            continue
        entry: list[Any] = [name, *_fields(seen)]
        if stat.S_ISLNK(seen.st_mode):
            try:
                seen = os.stat(path.with_name(name))
                entry.extend(_fields(seen))
            except OSError:
                entry.append(None)  # a link that leads nowhere
        if now - seen.st_ctime_ns < RACY_NS:
            return None
        sidecars.append(entry)
    size, mtime_ns, ctime_ns, ino = _fields(info)
    return {
        "v": VERSION,
        "size": size,
        "mtime_ns": mtime_ns,
        "ctime_ns": ctime_ns,
        "ino": ino,
        "sidecars": sidecars,
    }
