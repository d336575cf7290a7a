"""A verdict's reason in the reader's language, from its ``code`` and ``args``.

The wording lives in the pages' catalogue (``web/i18n/<lang>.json``, keys ``reason_text.<code>`` or
``reason_text.<code>.<variant>``). The API gives each reason in Chinese too (:func:`with_chinese`, the pages
show it) and the exports in the language asked, so both say the same. Lists of days are joined with commas,
lists of names with the language's separator; a programme, capability or bed kind is named in Chinese by the
catalogue (``programme.<code>`` ...), while the English text names the code, as the verdict's ``text`` does.
A reason whose template is missing, or names a value the reason lacks, is given in its English ``text``: a
reader never sees a half-filled sentence. The variant ``elsewhere`` (a reason said to a home without what another
home or the death register recorded, ``disclosure.py``) is worded here, under the pages' catalogue.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Final, Literal

from eldercare.platform.subsidy.models import Reason

Lang = Literal["zh-CN", "en"]
CATALOGUE: Final = Path(__file__).resolve().parent.parent / "web" / "i18n"
NAME_SEPARATOR: Final[dict[str, str]] = {"zh-CN": "、", "en": ", "}
_PLACEHOLDER: Final = re.compile(r"\{(\w+)\}")


NAMED_VALUES: Final = ("programme", "capability", "bed_kind")  # args whose value is a code with a name

# A list of homes said to a regulator names the homes of their region by code and the others only by the city they
# lie in (``disclosure.py``): ``args[OUTSIDE]`` holds those cities, said after the codes of ``homes``.
OUTSIDE: Final = "outside_region_homes"
_OUTSIDE_HOME: Final[dict[str, tuple[str, str]]] = {
    "en": ("a home outside your region (in {city})", "a home outside your region"),
    "zh-CN": ("辖区外的一家机构（{city}）", "辖区外的一家机构"),
}


# A reason said to a home without what another home or the death register recorded (``disclosure.py``): the
# variant ``elsewhere`` of the codes that can rest on them. The pages' catalogue, read over these, may say them.
_ASK_EN, _ASK_ZH = "ask the regulator", "详情请询问民政部门"
_WITHHELD: Final[dict[str, dict[str, str]]] = {
    "en": {
        "died_before_month": f"a death before the month is recorded for this person elsewhere; {_ASK_EN}",
        "claims_after_death": f"claims days after a death recorded for this person elsewhere; {_ASK_EN}",
        "duplicate_claim": (
            f"also claimed by another home for the same month; the bed sensors show the person there, not here; "
            f"{_ASK_EN}"
        ),
        "duplicate_unresolved": (
            f"also claimed by another home for the same month; the sensors do not tell which home is right; {_ASK_EN}"
        ),
        "duplicate_resolved": "also claimed by another home for the same month; the bed sensor shows the person here",
    },
    "zh-CN": {
        "died_before_month": f"别处记录此人已于本月之前死亡；{_ASK_ZH}",
        "claims_after_death": f"申领了别处记录的此人死亡之后的天数；{_ASK_ZH}",
        "duplicate_claim": f"另一家机构同月也申领了此人，床位传感器显示此人在那里，不在本机构；{_ASK_ZH}",
        "duplicate_unresolved": f"另一家机构同月也申领了此人；传感器无法判定哪家机构属实；{_ASK_ZH}",
        "duplicate_resolved": "另一家机构同月也申领了此人；床位传感器显示此人在本机构",
    },
}


@cache
def catalogue(lang: Lang) -> dict[str, str]:
    texts: dict[str, str] = json.loads((CATALOGUE / f"{lang}.json").read_text(encoding="utf-8"))
    return {**{f"reason_text.{code}.elsewhere": text for code, text in _WITHHELD[lang].items()}, **texts}


def named(kind: str, code: str, lang: Lang) -> str:
    """A code's name in the language (``programme.old_age_allowance``: 高龄津贴), or the code if it has none."""
    return catalogue(lang).get(f"{kind}.{code}", code)


def coded(kind: str, code: str, lang: Lang) -> str:
    """A code where a reason or an export shows one: as it is in English (what the verdict's ``text`` and
    programs reading the exports expect), its name in Chinese."""
    return code if lang == "en" or not code else named(kind, code, lang)


def _value(name: str, value: object, lang: Lang) -> str:
    if isinstance(value, list):
        separator = "," if all(isinstance(v, int) for v in value) else NAME_SEPARATOR[lang]
        return separator.join(str(v) for v in value)
    if name in NAMED_VALUES and isinstance(value, str):
        return coded(name, value, lang)
    return "" if value is None else str(value)


def _outside(cities: list[str], lang: Lang) -> list[str]:
    named, unnamed = _OUTSIDE_HOME[lang]
    return [named.format(city=city) if city else unnamed for city in cities]


def render(reason: Reason, lang: Lang) -> str:
    variant = reason.args.get("variant")
    key = f"reason_text.{reason.code}" + (f".{variant}" if variant else "")
    template = catalogue(lang).get(key)
    if template is None or any(name not in reason.args for name in _PLACEHOLDER.findall(template)):
        return reason.text
    args = dict(reason.args)
    if OUTSIDE in args and "homes" in args:
        args["homes"] = [*args["homes"], *_outside(list(args[OUTSIDE]), lang)]
    return _PLACEHOLDER.sub(lambda match: _value(match.group(1), args[match.group(1)], lang), template)


def with_chinese(reason: Reason) -> Reason:
    return reason.model_copy(update={"text_zh": render(reason, "zh-CN")})
