#!/usr/bin/env python3
"""Checks that a browser screenshot (PNG) is not blank.

    python3 scripts/ci/lib/png_check.py SCREENSHOT.png

Decodes the PNG with the standard library only (8-bit greyscale, grey +
alpha, RGB or RGBA; non-interlaced), samples every 4th pixel of every 4th
row and prints size, bytes, distinct colours and the share of the
dominant colour. Exits non-zero (with a message) if the file is not such
a PNG, or looks blank: under 20,000 bytes, under 50 distinct colours, or
one colour covering more than 97 %.
"""
import struct
import sys
import zlib


def unfilter(raw, w, h, channels):
    """The rows of a PNG image, PNG filters (none/sub/up/average/Paeth) undone."""
    stride = w * channels
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], (prev[i - channels] if i >= channels else 0)
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return rows


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{path}: not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype = ihdr[0], ihdr[1], ihdr[2], ihdr[3]
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None:
        sys.exit(f"{path}: unexpected PNG format depth={depth} colour type={ctype}")
    rows = unfilter(zlib.decompress(idat), w, h, channels)
    colours, counts = set(), {}
    for y in range(0, h, 4):
        row = rows[y]
        for x in range(0, w, 4):
            px = row[x * channels:x * channels + 3]
            colours.add(px)
            counts[px] = counts.get(px, 0) + 1
    total = sum(counts.values())
    dominant = max(counts.values()) / total
    print(f"screenshot {w}x{h}, {len(data)} bytes, {len(colours)} distinct colours sampled, "
          f"dominant colour covers {dominant:.0%}")
    if len(data) < 20_000 or len(colours) < 50 or dominant > 0.97:
        sys.exit(f"{path}: the screenshot looks blank")


if __name__ == "__main__":
    main()
