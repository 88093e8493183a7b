"""Make NotoSansCJKsc-Regular.subset.ttf: the CJK glyphs of the vouchers PDF, with TrueType outlines.

    uv run --with fonttools python templates/pdf/fonts/build_cjk.py NotoSansCJK-Regular.ttc

The source is Noto Sans CJK 2.004 (googlefonts/noto-cjk; Debian's fonts-noto-cjk ships the
same collection as /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc). ReportLab embeds
TrueType outlines only and Noto Sans CJK has CFF ones, so they are converted to quadratic
curves (at most 1 unit of the 1,000-unit em off: invisible at any size the PDF prints).
README.md beside this file says what the subset covers and why.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont, newTable

OUT = Path(__file__).resolve().parent / "NotoSansCJKsc-Regular.subset.ttf"
FACE = "Noto Sans CJK SC"  # the Simplified Chinese forms; the collection's other faces differ only in them
RANGES = [
    (0x0020, 0x007E),  # Basic Latin
    (0x00A0, 0x024F),  # Latin-1, Latin Extended-A and -B: names Vera lacks letters for (Łukasz, Dvořák)
    (0x0370, 0x03FF),  # Greek
    (0x0400, 0x04FF),  # Cyrillic
    (0x1E00, 0x1EFF),  # Latin Extended Additional (Vietnamese)
    (0x2000, 0x206F),  # General Punctuation
    (0x20A0, 0x20CF),  # Currency Symbols
    (0x2100, 0x214F),  # Letterlike Symbols
    (0x3000, 0x303F),  # CJK Symbols and Punctuation
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x3130, 0x318F),  # Hangul Compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana Phonetic Extensions
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs: every ideograph of GBK, Big5, JIS X 0208 and KS X 1001
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs (Korean hanja names)
    (0xFF00, 0xFFEF),  # Halfwidth and Fullwidth Forms
]


def hangul_of_ks_x_1001() -> set[int]:
    """The 2,350 precomposed Hangul syllables of KS X 1001 (EUC-KR rows 0xB0-0xC8)."""
    found = set()
    for lead in range(0xB0, 0xC9):
        for trail in range(0xA1, 0xFF):
            try:
                found.add(ord(bytes([lead, trail]).decode("euc_kr")))
            except UnicodeDecodeError:
                continue
    return {c for c in found if 0xAC00 <= c <= 0xD7A3}


def wanted() -> set[int]:
    chars = {c for start, stop in RANGES for c in range(start, stop + 1)}
    return chars | hangul_of_ks_x_1001()


def face(collection: Path) -> TTFont:
    for font in TTCollection(str(collection)).fonts:
        if font["name"].getDebugName(4) == FACE:
            return font
    raise SystemExit(f"{collection}: no face named {FACE!r}")


def quadratic(font: TTFont) -> None:
    """CFF outlines to TrueType ones, as fontTools' otf2ttf example does."""
    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder, glyf.glyphs = order, {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["loca"] = newTable("loca")
    font["glyf"] = glyf
    del font["CFF "]
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for field in ("maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs"):
        setattr(maxp, field, 0)
    maxp.maxZones, maxp.maxStackElements, maxp.maxSizeOfInstructions, maxp.maxComponentElements = 1, 0, 0, 0
    font["head"].glyphDataFormat = 0
    font["post"].formatType = 3.0  # no glyph names: CID fonts have none worth keeping
    font.sfntVersion = "\x00\x01\x00\x00"


def main(collection: Path) -> None:
    font = face(collection)
    options = subset.Options()
    options.layout_features = []  # ReportLab shapes nothing: no GSUB/GPOS needed
    options.hinting = False
    options.name_IDs = ["*"]  # the copyright, licence and trademark notices stay in the file
    options.drop_tables += ["BASE", "GDEF", "GPOS", "GSUB", "vhea", "vmtx", "VORG"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=wanted())
    subsetter.subset(font)
    quadratic(font)
    font.recalcTimestamp = False  # the same source gives the same bytes
    font.save(str(OUT))
    print(f"{OUT.name}: {font['maxp'].numGlyphs} glyphs, {OUT.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
