"""Certificate PDFs: A4 landscape, the vendored Unicode font, a QR code to the verify page.

A small PDF writer of our own rather than fpdf2: fpdf2 parses and subsets the TrueType
font again for every document (35 to 350 ms each, measured), which cannot make 12,000
certificates in a minute on two cores (issue 17). Here a `Renderer` subsets the font once
for every character its batch of certificates uses (fontTools) and each document reuses
those bytes, so one PDF costs about a millisecond plus its QR code. Text is drawn as glyph
ids with a ToUnicode map, so names are exact in copy-paste and pdftotext, and a hostile
name is only glyphs (nothing in it is ever PDF syntax). The code and verify URL are also
in the document's metadata (/Keywords) and a link annotation, which `certificates verify
PDF` reads.
"""

from __future__ import annotations

import hashlib
import io
import struct
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import segno
from fontTools import subset as ftsubset
from fontTools.ttLib import TTFont

from integrations.certificates.template import Template

FONT_PATH = Path(__file__).resolve().parent / "fonts" / "DejaVuSans.ttf"
PAGE_W, PAGE_H = 841.89, 595.28  # A4 landscape, points
MARGIN = 60.0
KEYWORD_PREFIX = "certificate-code:"
QR_SIZE = 120.0


class RenderError(Exception):
    "The certificate cannot be rendered (bad background image, unreadable font)"


def printable(text: str | None) -> str:
    """Text as it is printed: NFC, control characters and line breaks as spaces, single spaces."""
    text = unicodedata.normalize("NFC", text or "")
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    return " ".join(cleaned.split())


@lru_cache(maxsize=1)
def _font_characters() -> frozenset[int]:
    try:
        with TTFont(str(FONT_PATH), lazy=True) as font:
            return frozenset(font.getBestCmap())
    except OSError as e:
        raise RenderError(f"cannot read the certificate font {FONT_PATH}: {e}") from None


def misprinted(text: str) -> str | None:
    """Why `text` will not print as spelled (docs/certificates.md, "Names in other scripts"), or None."""
    if any(ord(c) not in _font_characters() for c in text if not c.isspace()):
        return "letters the font does not have (printed as boxes)"
    # Glyphs are drawn in stored order, one per character, with no bidi reordering and no
    # Arabic joining: right-to-left names come out reversed (and Arabic unjoined).
    if any(unicodedata.bidirectional(c) in ("R", "AL") for c in text):
        return "right-to-left letters (printed left to right; Arabic unjoined)"
    return None


@dataclass(frozen=True)
class _Font:
    """A subset of the vendored font: its file bytes, char -> glyph id, and advance widths (1/1000 em)."""

    data: bytes
    gids: dict[int, int]
    widths: dict[int, int]
    ascent: int
    descent: int
    bbox: tuple[int, int, int, int]
    tag: str

    def encode(self, text: str) -> str:
        """Hex glyph ids of `text` for a Tj operand (missing characters are glyph 0)."""
        return "".join(f"{self.gids.get(ord(c), 0):04X}" for c in text)

    def width(self, text: str, size: float) -> float:
        """Width of `text` at `size` points."""
        widths, gids = self.widths, self.gids
        return sum(widths.get(gids.get(ord(c), 0), 0) for c in text) * size / 1000


def subset_font(chars: Iterable[str]) -> _Font:
    """The vendored font cut down to `chars` (plus .notdef): done once per batch of certificates."""
    try:
        font = TTFont(str(FONT_PATH), recalcTimestamp=False)
    except OSError as e:
        raise RenderError(f"cannot read the certificate font {FONT_PATH}: {e}") from None
    cmap = font.getBestCmap()
    wanted = {ord(c) for c in chars} & set(cmap)
    options = ftsubset.Options()
    options.notdef_outline = True
    options.layout_features = []
    options.hinting = False
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "MATH", "FFTM"]
    subsetter = ftsubset.Subsetter(options)
    subsetter.populate(unicodes=wanted)
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    scale = 1000 / font["head"].unitsPerEm
    gids = {code: font.getGlyphID(name) for code, name in font.getBestCmap().items()}
    widths = {font.getGlyphID(name): round(adv * scale) for name, (adv, _) in font["hmtx"].metrics.items()}
    head = font["head"]
    data = out.getvalue()
    # Subset fonts carry a six-letter tag (PDF 32000 9.6.4), here derived from their glyphs.
    tag = "".join(chr(65 + b % 26) for b in hashlib.sha256(data).digest()[:6])
    return _Font(
        data=data,
        gids=gids,
        widths=widths,
        ascent=round(font["hhea"].ascent * scale),
        descent=round(font["hhea"].descent * scale),
        bbox=(round(head.xMin * scale), round(head.yMin * scale), round(head.xMax * scale), round(head.yMax * scale)),
        tag=tag,
    )


def _pdf_text(value: str) -> bytes:
    """A PDF text string: UTF-16BE with a byte-order mark, hex-encoded (no escaping to get wrong)."""
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d /Filter /FlateDecode%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def _to_unicode(font: _Font) -> bytes:
    pairs = sorted((gid, code) for code, gid in font.gids.items())
    seen: set[int] = set()
    lines = []
    for gid, code in pairs:
        if gid in seen or gid == 0:
            continue
        seen.add(gid)
        lines.append(f"<{gid:04X}> <{chr(code).encode('utf-16-be').hex().upper()}>")
    blocks = []
    for start in range(0, len(lines), 100):
        chunk = lines[start : start + 100]
        blocks.append(f"{len(chunk)} beginbfchar\n" + "\n".join(chunk) + "\nendbfchar")
    cmap = (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        + "\n".join(blocks)
        + "\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend"
    )
    return _stream(zlib.compress(cmap.encode("ascii")))


def _jpeg_size(data: bytes) -> tuple[int, int, int]:
    """(width, height, components) from a JPEG's start-of-frame marker."""
    if data[:2] != b"\xff\xd8":
        raise RenderError("the background image must be a JPEG file")
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            pos += 1
            continue
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height, data[pos + 9]
        pos += 2 + length
    raise RenderError("the background image is not a readable JPEG")


@dataclass(frozen=True)
class CertificatePage:
    """What one certificate prints (all text already as printed)."""

    number: int
    name: str
    event: str
    date: str
    attended_minutes: int
    score: str | None
    code: str
    verify_url: str


def page_of(row: dict[str, Any], template: Template, public_base_url: str) -> CertificatePage:
    """The page of a stored certificate row."""
    return CertificatePage(
        number=row["number"],
        name=row["name"],
        event=printable(template.event or row.get("event") or ""),
        date=row["date"],
        attended_minutes=row["attended_minutes"],
        score=row.get("score"),
        code=row["code"],
        verify_url=verify_url(public_base_url, row["code"]),
    )


def verify_url(public_base_url: str, code: str) -> str:
    """PUBLIC_BASE_URL/verify/CODE."""
    return f"{public_base_url.rstrip('/')}/verify/{code}"


class Renderer:
    """Renders certificates whose text uses only the characters it was built for."""

    def __init__(self, template: Template, texts: Iterable[str]):
        self.template = template
        chars = set("".join(texts))
        chars |= set("".join(self._fixed_texts()))
        chars |= set("0123456789 -:.,/·()%ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        self.font = subset_font(chars)
        self._constant = self._font_objects()
        self._background = self._background_object()

    def _fixed_texts(self) -> list[str]:
        t = self.template
        return [t.title, t.intro, t.event, t.organizer, t.signatory, t.signatory_role, *_LABELS.values()]

    def _font_objects(self) -> list[bytes]:
        f = self.font
        name = f"/{f.tag}+DejaVuSans".encode()
        widths = " ".join(f"{gid} [{w}]" for gid, w in sorted(f.widths.items()))
        bbox = " ".join(str(v) for v in f.bbox).encode()
        return [
            # 7 Type0 font, 8 CIDFont, 9 descriptor, 10 font file, 11 ToUnicode
            b"<< /Type /Font /Subtype /Type0 /BaseFont %s /Encoding /Identity-H /DescendantFonts [8 0 R] "
            b"/ToUnicode 11 0 R >>" % name,
            b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont %s /CIDSystemInfo << /Registry (Adobe) "
            b"/Ordering (Identity) /Supplement 0 >> /FontDescriptor 9 0 R /CIDToGIDMap /Identity /DW 600 "
            b"/W [%s] >>" % (name, widths.encode()),
            b"<< /Type /FontDescriptor /FontName %s /Flags 32 /FontBBox [%s] /ItalicAngle 0 /Ascent %d "
            b"/Descent %d /CapHeight %d /StemV 80 /FontFile2 10 0 R >>" % (name, bbox, f.ascent, f.descent, f.ascent),
            _stream(zlib.compress(f.data, 6), b" /Length1 %d" % len(f.data)),
            _to_unicode(f),
        ]

    def _background_object(self) -> bytes | None:
        path = self.template.background_image
        if not path:
            return None
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise RenderError(f"cannot read background image {path}: {e.strerror}") from None
        width, height, components = _jpeg_size(data)
        space = {1: b"/DeviceGray", 3: b"/DeviceRGB", 4: b"/DeviceCMYK"}.get(components, b"/DeviceRGB")
        return (
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s /BitsPerComponent 8 "
            b"/Filter /DCTDecode /Length %d >>\nstream\n" % (width, height, space, len(data)) + data + b"\nendstream"
        )

    # -- drawing -------------------------------------------------------------------------

    def _text(self, ops: list[str], text: str, size: float, y: float, *, x: float | None = None, bold=False) -> None:
        if not text:
            return
        width = self.font.width(text, size)
        if x is None:
            x = (PAGE_W - width) / 2
        mode = f"2 Tr {size / 40:.2f} w " if bold else "0 Tr "
        ops.append(f"BT /F1 {size:.2f} Tf {mode}{x:.2f} {y:.2f} Td <{self.font.encode(text)}> Tj ET")

    def _fitted(self, ops: list[str], text: str, size: float, y: float, *, bold=False, min_size=9.0) -> None:
        """Centered text shrunk to the width between the margins; very long text on two lines."""
        room = PAGE_W - 2 * MARGIN
        width = self.font.width(text, size)
        if width <= room:
            self._text(ops, text, size, y, bold=bold)
            return
        fitted = size * room / width
        if fitted >= size * 0.55 or " " not in text:
            self._text(ops, text, max(fitted, min_size), y, bold=bold)
            return
        words = text.split(" ")
        half = len(text) / 2
        cut, count = 1, 0
        for i, word in enumerate(words):
            count += len(word) + 1
            if count >= half:
                cut = max(1, i + 1)
                break
        lines = [" ".join(words[:cut]), " ".join(words[cut:])]
        line_size = min(size * 0.8, *(size * room / max(self.font.width(line, size), 1) for line in lines))
        line_size = max(line_size, min_size)
        self._text(ops, lines[0], line_size, y + line_size * 0.6, bold=bold)
        self._text(ops, lines[1], line_size, y - line_size * 0.6, bold=bold)

    def _qr(self, ops: list[str], url: str, x: float, y: float) -> None:
        # A fixed mask: choosing the best of eight costs more than the rest of the page, and any
        # mask is valid QR (the decoder reads which one from the format bits).
        qr = segno.make_qr(url, error="m", mask=0, boost_error=False)
        matrix = qr.matrix
        size = len(matrix)
        cell = QR_SIZE / size
        ops.append("0 0 0 rg")
        for row_index, row in enumerate(matrix):
            top = y + QR_SIZE - (row_index + 1) * cell
            col = 0
            while col < size:
                if row[col]:
                    start = col
                    while col < size and row[col]:
                        col += 1
                    ops.append(f"{x + start * cell:.3f} {top:.3f} {(col - start) * cell:.3f} {cell:.3f} re")
                else:
                    col += 1
        ops.append("f")

    def render(self, page: CertificatePage) -> bytes:
        """The PDF bytes of one certificate."""
        t = self.template
        ops: list[str] = []
        if self._background is not None:
            ops.append(f"q {PAGE_W:.2f} 0 0 {PAGE_H:.2f} 0 0 cm /Im1 Do Q")
        ops.append("0.12 0.23 0.45 rg 0.12 0.23 0.45 RG")
        self._fitted(ops, t.title, 38, 480, bold=True)
        ops.append("0.2 0.2 0.2 rg")
        self._fitted(ops, t.intro, 15, 425)
        ops.append("0 0 0 rg 0 0 0 RG")
        self._fitted(ops, page.name, 36, 365, bold=True)
        ops.append("0.2 0.2 0.2 rg")
        self._fitted(ops, f"{_LABELS['attended']} {page.event}" if page.event else _LABELS["attended"], 17, 310)
        facts = f"{page.date} · {page.attended_minutes} {_LABELS['minutes']}"
        if page.score:
            facts += f" · {_LABELS['score']} {page.score}"
        self._fitted(ops, facts, 14, 280)
        if t.organizer:
            self._fitted(ops, t.organizer, 14, 245)
        if t.signatory:
            ops.append(f"0.4 0.4 0.4 RG 0.8 w {MARGIN + 20:.2f} 140 m {MARGIN + 260:.2f} 140 l S")
            self._text(ops, t.signatory, 13, 122, x=MARGIN + 20)
            self._text(ops, t.signatory_role, 10, 106, x=MARGIN + 20)
        ops.append("0.35 0.35 0.35 rg")
        self._text(ops, f"{_LABELS['number']} {page.number}", 10, 60, x=MARGIN + 20)
        self._text(ops, _LABELS["verify"], 8, 46, x=MARGIN + 20)
        qr_x, qr_y = PAGE_W - MARGIN - QR_SIZE, 40.0
        self._qr(ops, page.verify_url, qr_x, qr_y)
        content = zlib.compress("\n".join(ops).encode("ascii"), 6)
        return self._document(page, content, (qr_x, qr_y))

    def _document(self, page: CertificatePage, content: bytes, qr_at: tuple[float, float]) -> bytes:
        t = self.template
        uri = page.verify_url.encode("ascii", "replace")
        uri_literal = b"(" + uri.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"
        resources = b"/Font << /F1 7 0 R >>"
        if self._background is not None:
            resources += b" /XObject << /Im1 12 0 R >>"
        x, y = qr_at
        objects = [
            b"<< /Type /Catalog /Pages 3 0 R >>",
            b"<< /Title %s /Subject %s /Author %s /Keywords %s /Producer (attendance-worker) >>"
            % (
                _pdf_text(f"{t.title}: {page.name}"),
                _pdf_text(page.verify_url),
                _pdf_text(t.organizer or "attendance-worker"),
                _pdf_text(KEYWORD_PREFIX + page.code),
            ),
            b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 %.2f %.2f] /Contents 5 0 R /Resources << %s >> "
            b"/Annots [6 0 R] >>" % (PAGE_W, PAGE_H, resources),
            _stream(content),
            b"<< /Type /Annot /Subtype /Link /Rect [%.2f %.2f %.2f %.2f] /Border [0 0 0] "
            b"/A << /S /URI /URI %s >> >>" % (x, y, x + QR_SIZE, y + QR_SIZE, uri_literal),
            *self._constant,
        ]
        if self._background is not None:
            objects.append(self._background)
        return _write_pdf(objects, page.code)


_LABELS = {
    "attended": "attended",
    "minutes": "minutes",
    "score": "quiz score",
    "number": "Certificate no.",
    "verify": "Scan the code or open its link to verify this certificate.",
}


def _write_pdf(objects: list[bytes], seed: str) -> bytes:
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    file_id = hashlib.sha256(seed.encode("ascii", "replace")).hexdigest()[:32].encode()
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 2 0 R /ID [<%s> <%s>] >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        file_id,
        file_id,
        xref,
    )
    return bytes(out)


def renderer_for(rows: Iterable[dict[str, Any]], template: Template) -> Renderer:
    """A Renderer for every character the rows' names and events use."""
    texts = []
    for row in rows:
        texts.append(row["name"])
        texts.append(row.get("event") or "")
        texts.append(str(row.get("score") or ""))
    return Renderer(template, texts)
