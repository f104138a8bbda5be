"""HEIC/HEIF through the optional `heif` extra (pillow-heif), registered with Pillow on first use.

Registration is lazy so that importing semsql stays cheap and a base install without the
extra works; ingest reports such files as skipped with `NEEDS_EXTRA`, never silently.
"""

from __future__ import annotations

import threading

HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif"})
HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})  # HEVC-coded
HEIF_BRANDS = HEIC_BRANDS | {b"mif1", b"msf1"}
"""ISO BMFF major brands (bytes 8-12, after "ftyp") of HEIF still images and sequences."""
NEEDS_EXTRA = "HEIC needs the heif extra: pip install 'semsql[heif]'"
SKIP_REASON = "heic without the heif extra"

_lock = threading.Lock()
_available: bool | None = None


def heif_available() -> bool:
    """Whether Pillow opens HEIC/HEIF here: registers pillow-heif's opener once, if installed."""
    global _available
    with _lock:
        if _available is None:
            _available = _register()
        return _available


def _register() -> bool:
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True
