#!/usr/bin/env python3
"""Draws the Teams app icons with no packages beyond the standard library.

color.png   192x192: a white check mark in a countersign "stamp" circle on
            a solid background (Teams shows it on its own tiles).
outline.png  32x32: the same mark in white on a transparent background
            (Teams tints it; the outline icon must be white and transparent).

Run from this directory: python3 make-icons.py
"""
import math
import struct
import zlib


def png(path, size, pixel):
    rows = b""
    for y in range(size):
        rows += b"\x00" + b"".join(bytes(pixel(x + 0.5, y + 0.5)) for x in range(size))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", header))
        f.write(chunk(b"IDAT", zlib.compress(rows, 9)))
        f.write(chunk(b"IEND", b""))


def seg_dist(px, py, ax, ay, bx, by):
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def check_mark(x, y, s, width):
    """Coverage (0..1) of a check mark scaled to an s-by-s box."""
    a, b, c = (0.28 * s, 0.52 * s), (0.44 * s, 0.68 * s), (0.74 * s, 0.34 * s)
    d = min(seg_dist(x, y, *a, *b), seg_dist(x, y, *b, *c))
    return max(0.0, min(1.0, width / 2 - d + 0.5))


def ring(x, y, s, radius, width):
    d = abs(math.hypot(x - s / 2, y - s / 2) - radius)
    return max(0.0, min(1.0, width / 2 - d + 0.5))


def mix(under, over, alpha):
    return [round(u * (1 - alpha) + o * alpha) for u, o in zip(under, over)]


def color(x, y):
    s = 192
    bg = [47, 84, 150]  # deep blue
    cov = max(check_mark(x, y, s, 18), ring(x, y, s, 70, 10))
    return mix(bg, [255, 255, 255], cov) + [255]


def outline(x, y):
    s = 32
    cov = max(check_mark(x, y, s, 3.2), ring(x, y, s, 14, 2))
    return [255, 255, 255, round(255 * cov)]


png("color.png", 192, color)
png("outline.png", 32, outline)
