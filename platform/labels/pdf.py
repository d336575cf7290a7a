"""PDF sheets of QR labels on A4, drawn as vectors (reportlab), each QR made by segno.

Each QR encodes exactly the code with its check character (``B7K2MX9Q4HT``), at error-correction level M,
with the 4-module quiet zone the standard asks for. Chinese text uses reportlab's built-in CID font
STSong-Light, so no font file is needed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import segno
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

FONT = "STSong-Light"
pdfmetrics.registerFont(UnicodeCIDFont(FONT))
QUIET = 4


@dataclass(frozen=True, slots=True)
class Label:
    code: str
    lines: Sequence[str]


def draw_qr(canvas: Canvas, data: str, *, x: float, y: float, size: float) -> None:
    """A QR code of ``data`` whose square (quiet zone included) has its lower-left corner at (x, y)."""
    qr = segno.make_qr(data, error="m", boost_error=False)
    matrix = [list(row) for row in qr.matrix]
    modules = len(matrix) + 2 * QUIET
    unit = size / modules
    canvas.setFillColorRGB(0, 0, 0)
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                canvas.rect(x + (c + QUIET) * unit, y + size - (r + QUIET + 1) * unit, unit, unit, stroke=0, fill=1)


def _sheet(labels: Sequence[Label], *, title: str, cols: int, rows: int, qr_size: float, font_size: float) -> bytes:
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=True)
    canvas.setTitle(title)
    width, height = A4
    margin = 10 * mm
    cell_w = (width - 2 * margin) / cols
    cell_h = (height - 2 * margin - 8 * mm) / rows
    per_page = cols * rows
    for index, label in enumerate(labels):
        if index and index % per_page == 0:
            canvas.showPage()
        if index % per_page == 0:
            canvas.setFont(FONT, 9)
            canvas.drawString(margin, height - margin - 4 * mm, title)
        slot = index % per_page
        col, row = slot % cols, slot // cols
        x0 = margin + col * cell_w
        y0 = height - margin - 8 * mm - (row + 1) * cell_h
        canvas.setStrokeColorRGB(0.75, 0.75, 0.75)
        canvas.setDash(2, 2)
        canvas.rect(x0, y0, cell_w, cell_h, stroke=1, fill=0)
        canvas.setDash()
        draw_qr(canvas, label.code, x=x0 + 2 * mm, y=y0 + (cell_h - qr_size) / 2, size=qr_size)
        text_x = x0 + 4 * mm + qr_size
        canvas.setFont("Courier-Bold", font_size + 1)
        canvas.drawString(text_x, y0 + cell_h - 10 * mm, label.code)
        canvas.setFont(FONT, font_size)
        for n, line in enumerate(label.lines):
            canvas.drawString(text_x, y0 + cell_h - (16 + 5 * n) * mm, line[:40])
    if not labels:
        canvas.setFont(FONT, 12)
        canvas.drawString(margin, height - margin - 10 * mm, f"{title}: —")
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def bed_labels(labels: Sequence[Label], *, title: str) -> bytes:
    """Bed labels, 2 by 7 on a page: QR, bed code, place."""
    return _sheet(labels, title=title, cols=2, rows=7, qr_size=30 * mm, font_size=9)


def resident_cards(labels: Sequence[Label], *, title: str) -> bytes:
    """Resident cards, 2 by 5 on a page: QR of the person code, name, bed, home."""
    return _sheet(labels, title=title, cols=2, rows=5, qr_size=40 * mm, font_size=11)
