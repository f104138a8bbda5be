"""XMP sidecars: `photo.xmp` (as Lightroom and Camera Raw write them) and `photo.jpg.xmp` (as
darktable, digiKam and Capture One do) beside an image, read with their image.

A sidecar is read beneath the image's root like the image itself, and is never an asset. What
goes wrong with one (unreadable, a link out of the root, over the XMP size limit) is reported
in the Sidecar and ends up in the asset's metadata_errors; the image is ingested all the same.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from semsql.safe_open import LeavesRoot, NotRegularFile, OverLimit, read_beneath
from semsql.xmp import MAX_XMP_BYTES

SIDECAR_SUFFIX = ".xmp"


def is_sidecar(path: Path) -> bool:
    """Whether the file is an XMP sidecar, by its name (in any case)."""
    return path.suffix.lower() == SIDECAR_SUFFIX


@dataclass(frozen=True, slots=True)
class Sidecar:
    name: str
    data: bytes | None = None  # None when it could not be read; `error` says why
    error: str | None = None

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else None


def sidecar_names(path: Path) -> list[str]:
    """The sidecar names of `path`, least specific first: `photo.xmp`, then `photo.jpg.xmp`
    (which wins where both set a field), each in lower and upper case (camera cards)."""
    names: list[str] = []
    for base in (path.stem, path.name):
        for suffix in (SIDECAR_SUFFIX, SIDECAR_SUFFIX.upper()):
            name = base + suffix
            if name != path.name and name not in names:
                names.append(name)
    return names


def read_sidecars(path: Path, root: Path | None) -> list[Sidecar]:
    """The sidecars beside `path`, opened beneath `root` when given. One lstat per name finds
    them (the common case: none), so a folder without sidecars costs almost nothing."""
    found: list[Sidecar] = []
    seen: set[tuple[int, int]] = set()  # a case-insensitive file system gives one file twice
    for name in sidecar_names(path):
        candidate = path.with_name(name)
        try:
            info = os.lstat(candidate)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        found.append(_read(candidate, root))
    return found


def _read(path: Path, root: Path | None) -> Sidecar:
    try:
        return Sidecar(path.name, read_beneath(path, root, MAX_XMP_BYTES))
    except LeavesRoot as error:
        return Sidecar(path.name, error=f"sidecar {path.name}: not read: {error}")
    except NotRegularFile:
        return Sidecar(path.name, error=f"sidecar {path.name}: not a regular file")
    except OverLimit as error:
        if error.grew:
            return Sidecar(
                path.name, error=f"sidecar {path.name}: over the XMP size limit; not read"
            )
        return Sidecar(
            path.name,
            error=f"sidecar {path.name}: {error.size:,} bytes is over the "
            f"{MAX_XMP_BYTES:,}-byte XMP limit; not read",
        )
    except OSError as error:
        if error.errno == errno.ENOENT:  # gone since the lstat, or a link that leads nowhere
            return Sidecar(path.name, error=f"sidecar {path.name}: not read: no such file")
        return Sidecar(path.name, error=f"sidecar {path.name}: cannot read: {error.strerror}")
