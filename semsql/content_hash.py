"""The content hash: how an image looks, in 256 bits, with no model.

A DCT perceptual hash of the pHash family (imagehash's `phash` with hash_size 16: the image in
grey at 64 x 64,
its 2-D DCT, the lowest frequencies), whose bits are the signs of those coefficients
instead of their comparison with the median. Signs turn rotations and mirrors into exact bit
operations: mirroring left-right changes the sign of every coefficient of odd horizontal
frequency, top-bottom of odd vertical frequency, and transposing the image transposes the
block. So the 8 rotated and mirrored variants of a stored hash are computed from it
(`variant` here, semsql.content_variant in SQL) instead of being stored or hashed again, and
the index holds one row per view.

Bit i (the i-th from the left, from 0) is the coefficient of vertical frequency i // 16 and
horizontal frequency i % 16; bit 0, the mean brightness, is always 0. 256 bits rather than
imagehash's default 64: on the scikit-image samples, resized, re-encoded (JPEG quality 30),
cropped, turned and mirrored copies lie within 20 % of the bits of their original, different
pictures 37 % and more apart (64 bits: 20 % and 27 %; a random pair differs in half).

Two views of each image: the whole image, and its centre (80 % of each side), so that a copy
cropped by 10 % on every side matches its original's centre view. Other crops change the low
frequencies as much as a different picture does; the semantic index finds those.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from PIL import Image

BITS = 256
SIDE = 16  # the block of lowest frequencies: SIDE x SIDE bits
GREY_SIDE = 64
CENTRE_SHARE = 0.8
VIEWS = ("full", "centre")
VARIANTS = 8
DECODE_SIDE = 128
"""The side images are decoded to for hashing (JPEG decodes straight at 1/8 scale)."""
NOISE = 1e-6
"""Coefficients smaller than this are rounding error (a step of one grey level gives about
1e-2), counted as 0: a flat image, of any colour, hashes to BLANK instead of to the signs of
that error, which are the same for every flat colour but black."""
BLANK = "0" * BITS
"""The hash of an image with no structure: it says nothing, so duplicates never link on it."""


@cache
def _low_dct_rows() -> np.ndarray:
    """The first SIDE rows of the orthonormal DCT-II matrix of GREY_SIDE points: the lowest
    frequencies of dct(x) are rows @ x (the others are never used)."""
    k = np.arange(SIDE)[:, None]
    i = np.arange(GREY_SIDE)[None, :]
    rows: np.ndarray = np.cos(np.pi * (2 * i + 1) * k / (2 * GREY_SIDE)) * np.sqrt(2 / GREY_SIDE)
    rows[0] /= np.sqrt(2)
    return rows


def hash_grey(grey: np.ndarray) -> str:
    """The hash of a GREY_SIDE x GREY_SIDE grey image, as a string of BITS '0' and '1'."""
    rows = _low_dct_rows()
    bits = (rows @ grey.astype(np.float64) @ rows.T) > NOISE
    bits[0, 0] = False
    return _bit_string(bits)


def _bit_string(bits: np.ndarray) -> str:
    return (bits.astype(np.uint8) + ord("0")).tobytes().decode("ascii")


def centre(image: Image.Image, share: float = CENTRE_SHARE) -> Image.Image:
    """The middle `share` of each side of the image."""
    dx = round(image.width * (1 - share) / 2)
    dy = round(image.height * (1 - share) / 2)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


def _grey(image: Image.Image) -> np.ndarray:
    # Lanczos: of Pillow's filters, the one under which copies stay nearest their originals.
    small = image.resize((GREY_SIDE, GREY_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64)


def content_hashes(image: Image.Image) -> dict[str, str]:
    """Each view's hash of an upright image (EXIF orientation applied), by view name."""
    grey = image.convert("L")
    return {"full": hash_grey(_grey(grey)), "centre": hash_grey(_grey(centre(grey)))}


def _masks() -> tuple[np.ndarray, np.ndarray]:
    odd = np.arange(SIDE) % 2 == 1
    horizontal = np.broadcast_to(odd[None, :], (SIDE, SIDE))  # odd horizontal frequency
    return horizontal, horizontal.T


def variant(bits: str, number: int) -> str:
    """The hash of the image turned by variant `number` (0 to 7): bit 2 transposes, bit 0
    mirrors left-right, bit 1 top-bottom (after transposing). 0 is the image itself; 3 is a
    half turn; 5 and 6 are the quarter turns; 4 and 7 mirror along a diagonal."""
    if not 0 <= number < VARIANTS:
        raise ValueError(f"variant must be 0 to {VARIANTS - 1}, not {number}")
    block = np.array([c == "1" for c in bits], dtype=bool).reshape(SIDE, SIDE)
    if number & 4:
        block = block.T.copy()
    horizontal, vertical = _masks()
    if number & 1:
        block ^= horizontal
    if number & 2:
        block ^= vertical
    return _bit_string(block)


def distance(a: str, b: str) -> int:
    """Hamming distance of two hashes."""
    return sum(x != y for x, y in zip(a, b, strict=True))
