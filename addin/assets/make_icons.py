"""Draw the calsync logo as PNG icons, with the standard library only.

The logo: a blue rounded square holding a white calendar page whose body shows
two blue arrows chasing each other (sync). Shapes are described in a unit square
and sampled SUPERSAMPLE x SUPERSAMPLE times per pixel, so edges are anti-aliased
at every size. Output is deterministic: running the script again rewrites the
same bytes (a test checks the committed PNGs against it).

Usage: python addin/assets/make_icons.py [OUTPUT_DIR]   (default: this folder)
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from pathlib import Path

SIZES = (16, 32, 64, 80, 128)
SUPERSAMPLE = 4
SIMPLE_MAX_SIZE = 20  # sizes up to this use the simplified glyph

BLUE_TOP = (59, 130, 246)  # gradient, top of the tile
BLUE_BOTTOM = (29, 78, 216)  # gradient, bottom of the tile
WHITE = (255, 255, 255)
INK = (30, 64, 175)  # the blue drawn on the white page

Color = tuple[int, int, int]


def _in_rounded_rect(
    x: float, y: float, x0: float, y0: float, x1: float, y1: float, r: float
) -> bool:
    if not (x0 <= x <= x1 and y0 <= y <= y1):
        return False
    cx = min(max(x, x0 + r), x1 - r)
    cy = min(max(y, y0 + r), y1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _in_triangle(
    x: float, y: float, a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]
) -> bool:
    def side(p: tuple[float, float], q: tuple[float, float]) -> float:
        return (x - q[0]) * (p[1] - q[1]) - (p[0] - q[0]) * (y - q[1])

    d1, d2, d3 = side(a, b), side(b, c), side(c, a)
    has_neg = d1 < 0 or d2 < 0 or d3 < 0
    has_pos = d1 > 0 or d2 > 0 or d3 > 0
    return not (has_neg and has_pos)


# The sync glyph: two arcs of a ring, each ending in an arrow head (clockwise).
SYNC_CENTER = (0.5, 0.615)
SYNC_R_OUT = 0.155
SYNC_R_IN = 0.095
# Arcs in degrees, measured clockwise on screen from the +x axis (y grows downward).
SYNC_ARCS = ((200.0, 320.0), (20.0, 140.0))


def _arrow_heads() -> list[tuple[tuple[float, float], ...]]:
    cx, cy = SYNC_CENTER
    mid = (SYNC_R_OUT + SYNC_R_IN) / 2
    half = (SYNC_R_OUT - SYNC_R_IN) * 1.05
    heads = []
    for _start, end in SYNC_ARCS:
        t = math.radians(end)
        # radial unit vector and clockwise tangent at the arc's end
        ux, uy = math.cos(t), math.sin(t)
        tx, ty = -math.sin(t), math.cos(t)
        bx, by = cx + mid * ux, cy + mid * uy
        base_a = (bx + half * ux, by + half * uy)
        base_b = (bx - half * ux, by - half * uy)
        length = (SYNC_R_OUT - SYNC_R_IN) * 1.45
        tip = (bx + length * tx, by + length * ty)
        heads.append((base_a, base_b, tip))
    return heads


ARROW_HEADS = _arrow_heads()


def _in_sync_glyph(x: float, y: float) -> bool:
    cx, cy = SYNC_CENTER
    dx, dy = x - cx, y - cy
    dist = math.hypot(dx, dy)
    if SYNC_R_IN <= dist <= SYNC_R_OUT:
        angle = math.degrees(math.atan2(dy, dx)) % 360.0
        for start, end in SYNC_ARCS:
            if start <= angle <= end:
                return True
    return any(_in_triangle(x, y, *head) for head in ARROW_HEADS)


def _sample_detailed(x: float, y: float) -> Color:
    """Inside the tile: white calendar page, a header rule and the sync arrows."""
    page = _in_rounded_rect(x, y, 0.20, 0.25, 0.80, 0.81, 0.075)
    rings = _in_rounded_rect(x, y, 0.325, 0.16, 0.405, 0.32, 0.035) or _in_rounded_rect(
        x, y, 0.595, 0.16, 0.675, 0.32, 0.035
    )
    if page and not rings and (0.365 <= y <= 0.405 or _in_sync_glyph(x, y)):
        return INK
    if page or rings:
        return WHITE
    return _tile_color(y)


def _sample_simple(x: float, y: float) -> Color:
    """Inside the tile, for small icons: the sync arrows blur into a blob at 16 pixels,
    so the page gets a solid header and four day squares, laid on a 16-pixel grid."""
    u = 1 / 16
    page = _in_rounded_rect(x, y, 3 * u, 3 * u, 13 * u, 14 * u, 0.6 * u)
    rings = (5 * u <= x < 6 * u or 10 * u <= x < 11 * u) and 1.5 * u <= y < 4 * u
    if rings:
        return WHITE
    if page:
        header = 4 * u <= y < 6 * u and 4 * u <= x < 12 * u
        days = any(
            x0 * u <= x < (x0 + 2) * u and y0 * u <= y < (y0 + 2) * u
            for x0 in (5, 9)
            for y0 in (7, 10)
        )
        return INK if header or days else WHITE
    return _tile_color(y)


def _tile_color(y: float) -> Color:
    return tuple(
        round(top + (bottom - top) * y) for top, bottom in zip(BLUE_TOP, BLUE_BOTTOM, strict=True)
    )  # type: ignore[return-value]


def _sample(x: float, y: float, simple: bool = False) -> tuple[Color, float] | None:
    """The logo's colour and coverage at a point of the unit square (None: transparent)."""
    if not _in_rounded_rect(x, y, 0.0, 0.0, 1.0, 1.0, 0.22):
        return None
    return (_sample_simple(x, y) if simple else _sample_detailed(x, y)), 1.0


def render_rgba(size: int) -> bytes:
    """RGBA pixels (row-major, 4 bytes each) of the logo at size x size."""
    n = SUPERSAMPLE
    simple = size <= SIMPLE_MAX_SIZE
    out = bytearray()
    for py in range(size):
        for px in range(size):
            r = g = b = a = 0.0
            for sy in range(n):
                for sx in range(n):
                    hit = _sample(
                        (px + (sx + 0.5) / n) / size, (py + (sy + 0.5) / n) / size, simple
                    )
                    if hit is None:
                        continue
                    (cr, cg, cb), alpha = hit
                    r += cr * alpha
                    g += cg * alpha
                    b += cb * alpha
                    a += alpha
            if a == 0:
                out += b"\x00\x00\x00\x00"
            else:
                out += bytes((round(r / a), round(g / a), round(b / a), round(255 * a / (n * n))))
    return bytes(out)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(size: int, rgba: bytes) -> bytes:
    """A PNG file (8-bit RGBA, no interlace) of a size x size image."""
    stride = size * 4
    raw = b"".join(b"\x00" + rgba[row * stride : (row + 1) * stride] for row in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def render_png(size: int) -> bytes:
    """The logo as PNG bytes at size x size pixels."""
    return encode_png(size, render_rgba(size))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    outdir = Path(args[0]) if args else Path(__file__).resolve().parent
    outdir.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        path = outdir / f"icon-{size}.png"
        path.write_bytes(render_png(size))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
