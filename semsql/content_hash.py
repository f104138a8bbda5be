"""The content hash: how an image looks, in 256 bits, with no model.

A DCT perceptual hash of the pHash family (imagehash's `phash` with hash_size 16: the image in
grey at 64 x 64, its 2-D DCT, the lowest frequencies), whose bits are the signs of those
coefficients instead of their comparison with the median. Signs turn rotations and mirrors
into exact bit operations: mirroring left-right changes the sign of every coefficient of odd
horizontal frequency, top-bottom of odd vertical frequency, and transposing the image
transposes the block (`variant`).

Bit i (the i-th from the left, from 0) is the coefficient of vertical frequency i // 16 and
horizontal frequency i % 16; bit 0, the mean brightness, is always 0. 256 bits rather than
imagehash's default 64: on the scikit-image samples, resized, re-encoded (JPEG quality 30),
cropped, turned and mirrored copies lie within 20 % of the bits of their original, different
pictures 37 % and more apart (64 bits: 20 % and 27 %; a random pair differs in half).

Two views of each image: the whole image, and its centre (80 % of each side), so that a copy
cropped by 10 % on every side matches its original's centre view. Other crops change the low
frequencies as much as a different picture does; the semantic index finds those.

What the index stores (`index_rows`) is each view turned into its canonical orientation: the
turn that makes the view's horizontal energy (odd horizontal, even vertical frequencies) the
larger, and the signed energy of those frequencies, and of their vertical counterparts,
positive. A turned or mirrored copy has the same canonical orientation as its original, so a
search scans one query hash per view instead of trying 8 turns (8 HNSW scans per view).
Where a choice is close (within AMBIGUOUS of a tie), the view is also stored the other way
(an alternate row), since a copy's small changes may tip it: 1.3 rows per view on the drawn
scenes of bench/content.py, where every copy was found so, from either side, as with the 8
turns.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

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
DECODE_MODE = "L"
"""...in grey: the hash reads nothing else."""
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


def low_frequencies(grey: np.ndarray) -> np.ndarray:
    """The SIDE x SIDE lowest DCT coefficients of a GREY_SIDE x GREY_SIDE grey image."""
    rows = _low_dct_rows()
    coefficients: np.ndarray = rows @ grey.astype(np.float64) @ rows.T
    return coefficients


def _hash_bits(coefficients: np.ndarray) -> str:
    """The hash of a view's low frequencies, as a string of BITS '0' and '1'."""
    bits = coefficients > NOISE
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


def _views(image: Image.Image) -> dict[str, np.ndarray]:
    grey = image.convert("L")
    return {"full": low_frequencies(_grey(grey)), "centre": low_frequencies(_grey(centre(grey)))}


def content_hashes(image: Image.Image) -> dict[str, str]:
    """Each view's hash of an upright image (EXIF orientation applied), by view name."""
    return {view: _hash_bits(coefficients) for view, coefficients in _views(image).items()}


class IndexRow(NamedTuple):
    view: str
    turn: int
    """The variant of the upright view's hash that `hash` is (see `variant`)."""
    hash: str
    alternate: bool
    """Another candidate orientation of a close call: stored, so that a copy tipped the other
    way finds it, but not scanned by a query (its first candidate is enough)."""


def index_rows(image: Image.Image) -> list[IndexRow]:
    """What the content index stores of an upright image: each view in each of its canonical
    orientations, the first of each view not an alternate. A query by the image scans the
    rows that are not alternates."""
    rows = []
    for view, coefficients in _views(image).items():
        upright = _hash_bits(coefficients)
        turns = [0] if upright == BLANK else canonical_turns(coefficients)
        rows += [
            IndexRow(view, turn, variant(upright, turn), alternate=i > 0)
            for i, turn in enumerate(turns)
        ]
    return rows


def query_hashes(image: Image.Image) -> list[str]:
    """The hashes a search by this image scans: each view's first canonical orientation."""
    return [row.hash for row in index_rows(image) if not row.alternate]


def canonical_turns(coefficients: np.ndarray) -> list[int]:
    """The variants (see `variant`) that put a view in its canonical orientation: one, or two
    to eight where a choice is within AMBIGUOUS of a tie, each choice by its sign first."""
    horizontal, vertical = _energy_masks()
    turns = []
    for transpose in _choices(_balance(coefficients, horizontal, vertical)):
        turned = coefficients.T if transpose else coefficients
        for left_right in _choices(-_signed_energy(turned, horizontal)):
            for top_bottom in _choices(-_signed_energy(turned, vertical)):
                turns.append(4 * transpose + left_right + 2 * top_bottom)
    return turns


AMBIGUOUS = 0.05
"""A choice of orientation whose measure (from -1 to 1) lies within this of 0 is made both
ways; copies of bench/content.py moved a measure by up to about this much."""


def _choices(measure: float) -> list[int]:
    """1 (turn) where the measure is positive, 0 where not, and the other too where it is
    within AMBIGUOUS of 0."""
    chosen = int(measure > 0)
    return [chosen, 1 - chosen] if abs(measure) < AMBIGUOUS else [chosen]


@cache
def _energy_masks() -> tuple[np.ndarray, np.ndarray]:
    """The frequencies whose coefficients only mirroring left-right changes in sign (odd
    horizontal, even vertical), and those that only mirroring top-bottom does; transposing
    swaps the two."""
    odd = np.arange(SIDE) % 2 == 1
    return ~odd[:, None] & odd[None, :], odd[:, None] & ~odd[None, :]


def _balance(coefficients: np.ndarray, horizontal: np.ndarray, vertical: np.ndarray) -> float:
    """From -1 to 1: how much more energy the vertical frequencies have than the horizontal
    (positive: transpose to make the horizontal ones the larger)."""
    h, v = (float(np.square(coefficients[mask]).sum()) for mask in (horizontal, vertical))
    return (v - h) / (v + h) if v + h > NOISE else 0.0


def _signed_energy(coefficients: np.ndarray, mask: np.ndarray) -> float:
    """From -1 to 1: the energy of those coefficients, each counted with its sign; the mirror
    that changes their signs changes its sign."""
    values = coefficients[mask]
    energy = float(np.square(values).sum())
    return float((values * np.abs(values)).sum()) / energy if energy > NOISE else 0.0


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
