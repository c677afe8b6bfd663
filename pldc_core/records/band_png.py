"""8-bit grayscale PNGs of maps that are zero outside a band of rows, without compressing the zeros.

A query's uncertainty map is zero outside its box, and zlib spends as long on a row of zeros as
on any other. Here only the band of rows that holds the box goes through zlib; the zero rows
above and below are deflate blocks of zeros made once per length, and the zlib checksum of the
whole image is carried across them arithmetically. Any PNG reader decodes the result.
"""
from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ZLIB_HEADER = b"\x78\x01"   # deflate, 32 KiB window, no dictionary
_ADLER_BASE = 65521


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@lru_cache(maxsize=256)
def _head(height: int, width: int) -> bytes:
    return _SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))


_TAIL = _chunk(b"IEND", b"")


@lru_cache(maxsize=4096)
def _zeros(n: int, last: bool) -> bytes:
    """Raw deflate blocks of ``n`` zero bytes, ending on a byte boundary (``last``: the final block)."""
    z = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    return z.compress(bytes(n)) + z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def _adler_of_zeros(adler: int, n: int) -> int:
    """The Adler-32 ``adler`` continued over ``n`` zero bytes (its first sum does not change)."""
    a, b = adler & 0xFFFF, adler >> 16
    return ((b + n * a) % _ADLER_BASE) << 16 | a


class BandPngs:
    """Writes the PNGs of several maps with one zlib compressor (each sets up ~0.4 MB of state). A
    full flush after each map keeps its data independent of the others': each PNG is the same
    bytes as a fresh compressor's."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_RLE)

    def __call__(self, band: np.ndarray, top: int, height: int, left: int = 0, width: int | None = None) -> bytes:
        """The PNG of a ``height`` x ``width`` uint8 map that is zero except ``band`` at (``top``, ``left``).

        ``band`` is ``[rows, cols]`` uint8; ``width`` defaults to its number of columns.
        """
        rows, cols = band.shape
        width = cols if width is None else width
        if not (0 <= top and top + rows <= height and 0 <= left and left + cols <= width):
            raise ValueError(f"band_png: a {rows}x{cols} band at ({top}, {left}) does not fit {height}x{width}")
        line = width + 1                        # a filter byte before each row
        above, below = top * line, (height - top - rows) * line
        # The band's rows use PNG's "Up" filter (the difference to the row above, which is zero for
        # the first): smooth maps leave small values and runs, which zlib's RLE strategy packs
        # ~20% faster than its default (the files are ~15% larger).
        raw = np.zeros((rows, line), dtype=np.uint8)
        raw[:, 0] = 2
        raw[:1, 1 + left:1 + left + cols] = band[:1]
        np.subtract(band[1:], band[:-1], out=raw[1:, 1 + left:1 + left + cols])
        adler = _adler_of_zeros(1, above)
        parts = [_ZLIB_HEADER]
        if above:
            parts.append(_zeros(above, last=False))
        if rows:
            parts += [self._z.compress(raw), self._z.flush(zlib.Z_FULL_FLUSH)]
            adler = zlib.adler32(raw, adler)
        parts.append(_zeros(below, last=True))
        adler = _adler_of_zeros(adler, below)
        parts.append(struct.pack(">I", adler))
        return _head(height, width) + _chunk(b"IDAT", b"".join(parts)) + _TAIL


def band_png(band: np.ndarray, top: int, height: int, left: int = 0, width: int | None = None) -> bytes:
    """One map's PNG (see ``BandPngs``, which is faster for several)."""
    return BandPngs()(band, top, height, left, width)
