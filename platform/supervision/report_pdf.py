"""The one-press risk inspection as a PDF (fpdf2), in Chinese and English, with the Noto Sans CJK font.

fpdf2 embeds a subset of the font (an OpenType/CFF collection, which reportlab cannot read), so the PDF
shows the same glyphs everywhere. The font file is Debian's fonts-noto-cjk (``make setup`` installs it);
``ELDERCARE_CJK_FONT`` points elsewhere. Face 2 of the collection is Simplified Chinese.

Reading the 20 MB collection and subsetting it costs about 0.6 s per PDF here, so the first PDF also
starts, in a background thread, a one-off cut of the face down to ASCII, Latin-1, punctuation and the
6,763 hanzi of GB 2312 (3.4 MB, cached in ``$ELDERCARE_CACHE_DIR`` or the temp folder); later PDFs use
it (about 0.2 s) whenever it has every character of the report, else the full face.
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
from fpdf.fonts import FontFace

from eldercare.platform.api.errors import Problem
from eldercare.platform.supervision.risk import RiskReport

log = logging.getLogger(__name__)

DEFAULT_FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
SIMPLIFIED_CHINESE_FACE = 2
LOCAL = ZoneInfo("Asia/Shanghai")
LEVEL_ZH = {"ok": "正常", "warning": "注意", "danger": "危险", "no_data": "无数据"}
LEVEL_RGB = {"ok": (46, 125, 50), "warning": (237, 108, 2), "danger": (198, 40, 40), "no_data": (117, 117, 117)}
COVERAGE_ZH = {"covered": "数据覆盖", "partial": "部分覆盖", "not_covered": "数据无法反映"}
HEADINGS = FontFace(emphasis="", fill_color=(240, 240, 240))  # the CJK font has one face here
MAX_ROWS = 40  # per section; the JSON has them all


def font_path() -> Path:
    return Path(os.environ.get("ELDERCARE_CJK_FONT", str(DEFAULT_FONT)))


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


def _cut_path(source: Path) -> Path:
    stat = source.stat()
    tag = hashlib.sha256(f"{source}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    base = Path(os.environ.get("ELDERCARE_CACHE_DIR", Path(tempfile.gettempdir()) / "eldercare-cache"))
    return base / f"noto-sans-sc-gb2312-{tag}.otf"


_cutting = threading.Lock()


def _cut(source: Path, target: Path) -> None:
    """Write the cut face to ``target`` (atomically), one cut at a time; usually in a background thread."""
    _cutting.acquire()
    try:
        if target.is_file():
            return
        from fontTools import subset  # type: ignore[import-untyped]
        from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

        options = subset.Options()
        options.font_number = SIMPLIFIED_CHINESE_FACE
        options.name_IDs = ["*"]
        options.layout_features = ["*"]
        font = TTFont(str(source), fontNumber=SIMPLIFIED_CHINESE_FACE, lazy=True)
        cutter = subset.Subsetter(options=options)
        cutter.populate(unicodes=_common_characters())
        cutter.subset(font)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.part")
        font.save(str(partial))
        partial.replace(target)
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
    """The font file and collection face to use for a report whose text is ``text``."""
    target = _cut_path(source)
    if target.is_file():
        if {ord(c) for c in text} <= _covered(target):
            return target, 0
    elif not _cutting.locked():
        threading.Thread(target=_cut, args=(source, target), name="cjk-font-cut", daemon=True).start()
    return source, SIMPLIFIED_CHINESE_FACE


def _text(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(LOCAL).strftime("%m-%d %H:%M")
    return str(value)


def render(report: RiskReport) -> bytes:
    font = font_path()
    if not font.is_file():
        raise Problem(503, f"the CJK font {font} is missing: install Debian's fonts-noto-cjk (make setup does)")
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(f"一键巡检 {report.institution_name}")
    pdf.set_creation_date(report.generated_at)
    face, number = _face(font, report.model_dump_json())
    pdf.add_font("cjk", fname=str(face), collection_font_number=number)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    width = pdf.epw
    pdf.set_font("cjk", size=16)
    pdf.cell(width, 9, f"一键巡检报告 · {report.institution_name}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("cjk", size=9)
    stamp = report.generated_at.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M")
    pdf.cell(
        width,
        6,
        f"One-press risk inspection · {report.institution_code} · {stamp} (北京时间) · "
        f"设备 {report.devices} 台 · 在住 {report.residents} 人",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.ln(2)
    _heading(pdf, "GB 38600-2019 九类风险 / the nine risks")
    for risk in report.risks:
        r, g, b = LEVEL_RGB[risk.level]
        pdf.set_text_color(r, g, b)
        pdf.set_font("cjk", size=10)
        pdf.cell(22, 6, LEVEL_ZH[risk.level])
        pdf.set_text_color(0, 0, 0)
        pdf.cell(70, 6, f"{risk.name_zh} {risk.name}")
        pdf.cell(0, 6, COVERAGE_ZH[risk.coverage], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("cjk", size=8)
        for finding in risk.findings:
            pdf.set_x(pdf.l_margin + 22)
            pdf.multi_cell(width - 22, 4.5, finding, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    for section in report.sections:
        pdf.ln(2)
        _heading(pdf, f"{section.title_zh} / {section.title}: {section.count}")
        if not section.items:
            pdf.set_font("cjk", size=9)
            pdf.cell(0, 5, "无 / none", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            continue
        columns = list(section.items[0])
        pdf.set_font("cjk", size=8)
        with pdf.table(text_align="LEFT", line_height=5, headings_style=HEADINGS) as table:
            table.row(columns)
            for item in section.items[:MAX_ROWS]:
                table.row([_text(item[c]) for c in columns])
        if section.count > MAX_ROWS:
            pdf.cell(0, 5, f"… {section.count - MAX_ROWS} more in the JSON report", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


def _heading(pdf: FPDF, text: str) -> None:
    pdf.set_font("cjk", size=12)
    pdf.set_fill_color(232, 240, 254)
    pdf.cell(pdf.epw, 7, text, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
