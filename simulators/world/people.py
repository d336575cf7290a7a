"""Synthetic people: names, ages, ID numbers, phones and care needs, drawn from a seeded generator.

Ages of residents (60 to 100): the shares per decade below are an assumption, not an official table. They
follow what surveys of Chinese homes report (a mean age near 80, most residents in their eighties, few under
70, because people enter homes when they can no longer live alone): 60-69 12 %, 70-79 30 %, 80-89 43 %,
90-99 14 %, 100 1 %. Within a decade every year is equally likely. Women outnumber men, more so with age
(they live longer): 55 % of residents under 80 and 65 % from 80 are women.

Care needs (能力评估) depend on the bed: nursing-type beds hold mostly partly disabled and disabled elders,
ordinary beds mostly self-caring ones; each year above 80 makes disability a little likelier. Fall risk
follows the usual pattern of fall scales (those who walk with help are at the highest risk; bedridden
elders seldom fall); about 12 % of the elders who can walk have dementia with a risk of wandering.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from eldercare.devices import codes

# The commonest surnames, most frequent first (weights fall off with rank); 覃, 向 and 田 are common
# among the Tujia of western Hubei.
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程魏苏吕丁任沈"
    "姚卢傅钟姜崔谭廖范汪陆金石戴贾韦夏邱方侯邹熊孟秦白江阎薛尹段雷黎史龙陶贺顾毛郝龚邵万覃向"
)
_SURNAME_WEIGHTS = [1.0 / (rank + 8) for rank in range(len(SURNAMES))]

# Given names of people born 1925-1965.
ELDER_WOMEN = [
    "秀英",
    "桂英",
    "秀兰",
    "玉兰",
    "桂兰",
    "秀珍",
    "凤英",
    "玉珍",
    "玉英",
    "兰英",
    "淑珍",
    "春兰",
    "秀云",
    "桂芳",
    "素珍",
    "翠兰",
    "菊英",
    "金凤",
    "秀芳",
    "桂珍",
    "玉梅",
    "冬梅",
    "春梅",
    "淑英",
    "秀华",
    "月英",
    "美华",
    "德英",
    "银凤",
    "英",
    "兰",
    "珍",
    "芳",
    "霞",
    "梅",
    "凤",
    "萍",
    "琴",
    "娥",
]
ELDER_MEN = [
    "建国",
    "建华",
    "国华",
    "国强",
    "德明",
    "德华",
    "志强",
    "志明",
    "文华",
    "文明",
    "明华",
    "金山",
    "春生",
    "长生",
    "福生",
    "永红",
    "建军",
    "国庆",
    "卫国",
    "振华",
    "光明",
    "树林",
    "保国",
    "少华",
    "新民",
    "正华",
    "家兴",
    "德胜",
    "子明",
    "军",
    "伟",
    "勇",
    "强",
    "明",
    "华",
    "平",
    "刚",
    "斌",
    "林",
]
# Given names of their children (born 1950-1990).
YOUNG_WOMEN = [
    "丽",
    "静",
    "敏",
    "艳",
    "娟",
    "霞",
    "燕",
    "红",
    "玲",
    "芳",
    "晓燕",
    "丽华",
    "海燕",
    "红梅",
    "小红",
    "秀丽",
    "雪梅",
    "慧",
    "琳",
    "婷",
]
YOUNG_MEN = [
    "伟",
    "磊",
    "勇",
    "军",
    "涛",
    "斌",
    "强",
    "鹏",
    "杰",
    "浩",
    "建平",
    "海涛",
    "志刚",
    "晓东",
    "红军",
    "建波",
    "卫东",
    "俊",
    "波",
    "峰",
]

_MOBILE_PREFIXES = [
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "176",
    "177",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "198",
    "199",
]

# (lowest age, highest age, share) of residents; see the module's docstring.
AGE_BANDS = ((60, 69, 0.12), (70, 79, 0.30), (80, 89, 0.43), (90, 99, 0.14), (100, 100, 0.01))


@dataclass(frozen=True, slots=True)
class Elder:
    name: str
    sex: codes.Sex
    age: int
    birth_date: date
    id_number: str
    capability: str  # self_care | partly_disabled | disabled
    fall_risk: str  # low | medium | high
    wander_risk: bool


def surname(rng: random.Random) -> str:
    return rng.choices(SURNAMES, weights=_SURNAME_WEIGHTS)[0]


def elder_name(rng: random.Random, sex: codes.Sex) -> str:
    return surname(rng) + rng.choice(ELDER_WOMEN if sex == "female" else ELDER_MEN)


def young_name(rng: random.Random, sex: codes.Sex, family: str | None = None) -> str:
    return (family or surname(rng)) + rng.choice(YOUNG_WOMEN if sex == "female" else YOUNG_MEN)


def mobile(rng: random.Random) -> str:
    return rng.choice(_MOBILE_PREFIXES) + "".join(rng.choice("0123456789") for _ in range(8))


def landline(rng: random.Random, area: str = "0717") -> str:
    """A landline of the city (Yichang's area code is 0717)."""
    return f"{area}-{rng.randint(2, 8)}{rng.randint(0, 9_999_999):07d}"


def age(rng: random.Random) -> int:
    low, high, _ = rng.choices(AGE_BANDS, weights=[b[2] for b in AGE_BANDS])[0]
    return rng.randint(low, high)


def birth_date(rng: random.Random, *, age: int, as_of: date) -> date:
    """A birth date on which the person is exactly ``age`` on ``as_of``."""
    latest = _years_before(as_of, age)  # the birthday falls on as_of at the latest
    earliest = _years_before(as_of, age + 1) + timedelta(days=1)
    # One draw whatever the year's length, so the rest of a plan does not depend on the as-of date.
    return earliest + timedelta(days=int(rng.random() * ((latest - earliest).days + 1)))


def _years_before(day: date, years: int) -> date:
    return add_years(day, -years)


def add_years(day: date, years: int) -> date:
    """The same day ``years`` later (28 February for 29 February in a common year)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - int((day.month, day.day) < (birth.month, birth.day))


def _capability(rng: random.Random, *, age: int, nursing_bed: bool) -> str:
    older = max(0, age - 80) * 0.01
    if nursing_bed:
        weights = (0.10, 0.45 - older / 2, 0.45 + older / 2)
    else:
        weights = (0.70 - older, 0.27 + older / 2, 0.03 + older / 2)
    return rng.choices(("self_care", "partly_disabled", "disabled"), weights=weights)[0]


def _fall_risk(rng: random.Random, *, age: int, capability: str) -> str:
    if capability == "partly_disabled":
        weights = (0.05, 0.35, 0.60)
    elif capability == "disabled":
        weights = (0.40, 0.50, 0.10)
    elif age >= 85:
        weights = (0.30, 0.50, 0.20)
    else:
        weights = (0.60, 0.35, 0.05)
    return rng.choices(("low", "medium", "high"), weights=weights)[0]


def elder(rng: random.Random, *, as_of: date, region6: str, nursing_bed: bool) -> Elder:
    years = age(rng)
    female_share = 0.65 if years >= 80 else 0.55
    sex: codes.Sex = "female" if rng.random() < female_share else "male"
    born = birth_date(rng, age=years, as_of=as_of)
    capability = _capability(rng, age=years, nursing_bed=nursing_bed)
    return Elder(
        name=elder_name(rng, sex),
        sex=sex,
        age=years,
        birth_date=born,
        id_number=codes.generate_id_number(rng, region6=region6, birth_date=born, sex=sex),
        capability=capability,
        fall_risk=_fall_risk(rng, age=years, capability=capability),
        wander_risk=capability != "disabled" and rng.random() < 0.12,
    )
