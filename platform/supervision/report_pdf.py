"""The one-press risk inspection as a PDF (fpdf2), in Chinese and English, with the Noto Sans CJK font.

fpdf2 embeds a subset of the font (an OpenType/CFF collection, which reportlab cannot read), so the PDF
shows the same glyphs everywhere. The font file is Debian's fonts-noto-cjk (``make setup`` installs it);
``ELDERCARE_CJK_FONT`` points elsewhere. Face 2 of the collection is Simplified Chinese.

What a PDF costs is mostly the font: fontTools reads a face's every glyph to subset it, 0.6 s for the 20 MB
collection and 0.3 s for a 3.4 MB cut, on every PDF. So:

1. the first PDF starts, in a background thread, a one-off cut of the face down to ASCII, Latin-1,
   punctuation and the 6,763 hanzi of GB 2312 (cached in ``$ELDERCARE_CACHE_DIR`` or the temp folder);
2. each report is drawn with a small face of exactly its own characters and those of the page's fixed
   text, cut from (1) when it has them all, else from the full face, and cached by character set (a few
   hundred glyphs, about 30 kB). A home's reports keep one character set (its name, its bed labels; the
   rest is ASCII), so only its first PDF pays for the cut;
3. the tables are drawn one line per row with plain cells (an over-long value is shortened with "…"):
   fpdf2's wrapping tables laid every cell out twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from datetime import datetime
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from eldercare.platform.api.errors import Problem
from eldercare.platform.supervision.risk import RiskReport

log = logging.getLogger(__name__)

DEFAULT_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
SIMPLIFIED_CHINESE_FACE = 2
LOCAL = ZoneInfo("Asia/Shanghai")
LEVEL_ZH = {"ok": "正常", "warning": "注意", "danger": "危险", "no_data": "无数据"}
ENGLISH_RGB = (90, 90, 90)  # a finding in English, under its Chinese
LEVEL_RGB = {"ok": (46, 125, 50), "warning": (237, 108, 2), "danger": (198, 40, 40), "no_data": (117, 117, 117)}
COVERAGE_ZH = {"covered": "数据覆盖", "partial": "部分覆盖", "not_covered": "数据无法反映"}
TITLE = "一键巡检报告"
SUBTITLE = "One-press risk inspection · {code} · {stamp} (北京时间) · 设备 {devices} 台 · 在住 {residents} 人"
RISKS_HEADING = "GB 38600-2019 九类风险 / the nine risks"
OUTCOMES_HEADING = "报警处理结果 / alarm outcomes · {start} ~ {end}"
NONE = "无 / none"
MORE = "… {n} more in the JSON report"
ELLIPSIS = "…"
MAX_ROWS = 40  # per section; the JSON has them all
ROW_MM = 5.0
CELL_PAD_MM = 1.0
# Every character the page's fixed text may use, whatever the report says.
FIXED_TEXT = "".join(
    [TITLE, SUBTITLE, RISKS_HEADING, OUTCOMES_HEADING, NONE, MORE, ELLIPSIS, *LEVEL_ZH.values(), *COVERAGE_ZH.values()]
)
ASCII = frozenset(range(0x20, 0x7F))
MINI_FONTS_KEPT = 2000  # small faces kept in the cache folder; the oldest go first


def font_path() -> Path:
    return Path(os.environ.get("ELDERCARE_CJK_FONT", str(DEFAULT_FONT)))


def _cache_dir() -> Path:
    return Path(os.environ.get("ELDERCARE_CACHE_DIR", Path(tempfile.gettempdir()) / "eldercare-cache"))


def _common_characters() -> set[int]:
    chars = {*range(0x20, 0x7F), *range(0xA0, 0x180), *range(0x2000, 0x2070), *range(0x2190, 0x2200)}
    chars |= {*range(0x25A0, 0x2600), *range(0x3000, 0x3040), *range(0xFF00, 0xFFF0)}
    for code in range(0x4E00, 0xA000):
        try:
            chr(code).encode("gb2312")
        except UnicodeEncodeError:
            continue
        chars.add(code)
    return chars


def _file_tag(source: Path) -> str:
    stat = source.stat()
    return hashlib.sha256(f"{source}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def _cut_path(source: Path) -> Path:
    return _cache_dir() / f"noto-sans-sc-gb2312-{_file_tag(source)}.otf"


_cutting = threading.Lock()


def _subset(source: Path, number: int, unicodes: set[int], target: Path, *, layout: bool) -> None:
    """Write the glyphs of ``unicodes`` in face ``number`` of ``source`` to ``target``, atomically; with
    ``layout`` the OpenType layout features and the glyphs they reach are kept too."""
    from fontTools import subset  # type: ignore[import-untyped]
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    options = subset.Options()
    options.font_number = number
    options.name_IDs = ["*"]
    if layout:
        options.layout_features = ["*"]
    else:  # fpdf2 does not shape text here and drops these tables from what it embeds
        options.layout_features = []
        options.drop_tables += ["GSUB", "GPOS", "GDEF", "BASE", "JSTF", "vhea", "vmtx", "VORG"]
    font = TTFont(str(source), fontNumber=number, lazy=True)
    cutter = subset.Subsetter(options=options)
    cutter.populate(unicodes=unicodes)
    cutter.subset(font)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.part")
    font.save(str(partial))
    partial.replace(target)


def _cut(source: Path, target: Path) -> None:
    """Write the GB 2312 cut to ``target``, one cut at a time; usually in a background thread."""
    _cutting.acquire()
    try:
        if target.is_file():
            return
        _subset(source, SIMPLIFIED_CHINESE_FACE, _common_characters(), target, layout=True)
        log.info("cut the CJK font for PDFs: %s", target)
    except (OSError, ValueError, KeyError) as exc:  # the full face still works; say why the cut did not
        log.warning("could not cut the CJK font %s: %s", source, exc)
    finally:
        _cutting.release()


@cache
def _covered(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(str(path), lazy=True).getBestCmap())


def _face(source: Path, text: str) -> tuple[Path, int]:
    """The font file and collection face to cut a report's face from, for a report whose text is ``text``."""
    target = _cut_path(source)
    if target.is_file():
        if {ord(c) for c in text} <= _covered(target):
            return target, 0
    elif not _cutting.locked():
        threading.Thread(target=_cut, args=(source, target), name="cjk-font-cut", daemon=True).start()
    return source, SIMPLIFIED_CHINESE_FACE


def _report_face(source: Path, text: str) -> tuple[Path, int]:
    """A small face with the characters of ``text``, the page's fixed text and ASCII (cached by that set);
    the face it would be cut from when the cache folder cannot be written."""
    face, number = _face(source, text + FIXED_TEXT)
    chars = sorted({ord(c) for c in text + FIXED_TEXT} | ASCII)
    key = hashlib.sha256(f"{_file_tag(face)}:{number}:{chars}".encode()).hexdigest()[:24]
    target = _cache_dir() / f"noto-sans-sc-report-{key}.otf"
    if not target.is_file():
        try:
            _subset(face, number, set(chars), target, layout=False)
            _prune(target.parent)
        except OSError as exc:  # slower, still right
            log.warning("could not write a small CJK face to %s: %s", target.parent, exc)
            return face, number
    return target, 0


def _prune(folder: Path) -> None:
    faces = sorted(folder.glob("noto-sans-sc-report-*.otf"), key=lambda p: p.stat().st_mtime)
    for old in faces[: max(0, len(faces) - MINI_FONTS_KEPT)]:
        old.unlink(missing_ok=True)


def _text(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(LOCAL).strftime("%m-%d %H:%M")
    return str(value)


def render(report: RiskReport) -> bytes:
    source = font_path()
    if not source.is_file():
        raise Problem(503, f"the CJK font {source} is missing: install Debian's fonts-noto-cjk (make setup does)")
    sections = [
        (s.title_zh, s.title, s.count, list(s.items[0]) if s.items else [],
         [[_text(item[c]) for c in item] for item in s.items[:MAX_ROWS]])
        for s in report.sections
    ]  # fmt: skip
    stamp = report.generated_at.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M")
    subtitle = SUBTITLE.format(
        code=report.institution_code, stamp=stamp, devices=report.devices, residents=report.residents
    )
    outcomes = report.alarm_outcomes
    outcomes_heading = OUTCOMES_HEADING.format(start=outcomes.start, end=outcomes.end)
    shown = [report.institution_name, subtitle, *(f"{r.name_zh} {r.name}" for r in report.risks)]
    shown += [outcomes_heading, outcomes.said_zh, outcomes.said]
    shown += [f for r in report.risks for f in r.findings + r.findings_zh]
    shown += [f"{zh} {en} {n}" for zh, en, n, _, _ in sections]
    shown += [cell for *_, columns, rows in sections for cell in columns + [c for row in rows for c in row]]
    face, number = _report_face(source, "".join(shown))

    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(f"一键巡检 {report.institution_name}")
    pdf.set_creation_date(report.generated_at)
    pdf.add_font("cjk", fname=str(face), collection_font_number=number)
    embedded = pdf.fonts["cjk"]
    # The glyphs are the face's own; the face's bounding boxes stand for the subset fpdf2 embeds (a box that
    # encloses every glyph still encloses fewer), so fontTools need not redraw every glyph to recompute them.
    if hasattr(embedded, "ttfont"):
        embedded.ttfont.recalcBBoxes = False
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.epw
    pdf.set_font("cjk", size=16)
    pdf.cell(width, 9, f"{TITLE} · {report.institution_name}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("cjk", size=9)
    pdf.cell(width, 6, subtitle, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _risks(pdf, report)
    _said(pdf, outcomes_heading, outcomes.said_zh, outcomes.said)  # false alarms, or that they are not known
    for title_zh, title, count, columns, rows in sections:
        pdf.ln(2)
        _heading(pdf, f"{title_zh} / {title}: {count}")
        pdf.set_font("cjk", size=8 if rows else 9)
        if not rows:
            pdf.cell(0, ROW_MM, NONE, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            continue
        _table(pdf, columns, rows)
        if count > MAX_ROWS:
            pdf.cell(0, ROW_MM, MORE.format(n=count - MAX_ROWS), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


def _risks(pdf: FPDF, report: RiskReport) -> None:
    width = pdf.epw
    pdf.ln(2)
    _heading(pdf, RISKS_HEADING)
    for risk in report.risks:
        r, g, b = LEVEL_RGB[risk.level]
        pdf.set_text_color(r, g, b)
        pdf.set_font("cjk", size=10)
        pdf.cell(22, 6, LEVEL_ZH[risk.level])
        pdf.set_text_color(0, 0, 0)
        pdf.cell(70, 6, f"{risk.name_zh} {risk.name}")
        pdf.cell(0, 6, COVERAGE_ZH[risk.coverage], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("cjk", size=8)
        for zh, en in zip(risk.findings_zh, risk.findings, strict=True):  # each in Chinese, then in English
            pdf.set_x(pdf.l_margin + 22)
            pdf.multi_cell(width - 22, 4.5, zh, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_text_color(*ENGLISH_RGB)
            pdf.set_x(pdf.l_margin + 22)
            pdf.multi_cell(width - 22, 4.5, en, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_text_color(0, 0, 0)


def _said(pdf: FPDF, heading: str, zh: str, en: str) -> None:
    """A heading and what it says, in Chinese, then in English under it."""
    pdf.ln(2)
    _heading(pdf, heading)
    pdf.set_font("cjk", size=9)
    pdf.multi_cell(pdf.epw, 5, zh, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*ENGLISH_RGB)
    pdf.multi_cell(pdf.epw, 5, en, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)


def _heading(pdf: FPDF, text: str) -> None:
    pdf.set_font("cjk", size=12)
    pdf.set_fill_color(232, 240, 254)
    pdf.cell(pdf.epw, 7, text, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)


def _table(pdf: FPDF, columns: list[str], rows: list[list[str]]) -> None:
    """One line per row; columns as wide as their widest value, shrunk to the page, values cut to fit."""
    natural = [
        max(pdf.get_string_width(t) for t in [c, *(row[i] for row in rows)]) + 2 * CELL_PAD_MM + 0.5
        for i, c in enumerate(columns)
    ]
    scale = min(1.0, pdf.epw / sum(natural))
    widths = [w * scale for w in natural]
    pdf.set_fill_color(240, 240, 240)
    for n, row in enumerate([columns, *rows]):
        if pdf.will_page_break(ROW_MM):
            pdf.add_page()
        for i, (value, w) in enumerate(zip(row, widths, strict=True)):
            last = i == len(widths) - 1
            pdf.cell(w, ROW_MM, _fit(pdf, value, w - 2 * CELL_PAD_MM), border=1, fill=n == 0,
                     new_x=XPos.LMARGIN if last else XPos.RIGHT, new_y=YPos.NEXT if last else YPos.TOP)  # fmt: skip


def _fit(pdf: FPDF, text: str, width: float) -> str:
    if pdf.get_string_width(text) <= width:
        return text
    while text and pdf.get_string_width(text + ELLIPSIS) > width:
        text = text[:-1]
    return text + ELLIPSIS
