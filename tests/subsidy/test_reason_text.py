"""The wording of a verdict's reasons in both languages: every code the verdict can give has a template in
each catalogue, the two name the same values, and a reason whose template is missing or incomplete is given in
its English text (the verdicts themselves are checked against their texts in test_fraud.py)."""

from __future__ import annotations

import re

from eldercare.platform.subsidy import reason_text
from eldercare.platform.subsidy.models import Reason
from eldercare.platform.subsidy.reasons_sql import REASONS
from eldercare.platform.subsidy.reports import LINE_COLUMNS, TOTAL_COLUMNS, headers

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _codes() -> set[str]:
    codes = set(re.findall(r"'code', '(\w+)'", REASONS))
    for pair in re.findall(r"'code', CASE WHEN [^']*THEN '(\w+)' ELSE '(\w+)' END", REASONS):
        codes |= set(pair)
    return codes


def _templates(lang: reason_text.Lang) -> dict[str, str]:
    return {key: text for key, text in reason_text.catalogue(lang).items() if key.startswith("reason_text.")}


def test_every_code_has_the_same_template_in_both_languages() -> None:
    codes = _codes()
    assert len(codes) >= 28, codes
    en, zh = _templates("en"), _templates("zh-CN")
    assert set(en) == set(zh)
    keyed = {key.split(".")[1] for key in en}
    assert codes <= keyed, codes - keyed
    for key, template in en.items():
        assert sorted(PLACEHOLDER.findall(template)) == sorted(PLACEHOLDER.findall(zh[key])), key
        assert re.search(r"[\u4e00-\u9fff]", zh[key]), key  # said in Chinese


def test_a_reason_is_filled_in_the_language_asked() -> None:
    reason = Reason(
        code="sensor_offline",
        text="the bed sensor had no data on 3 of 30 night(s) (4,5,6); an outage is not an absence, "
        "but too long to pay unseen",
        args={"count": 3, "payable": 30, "nights": [4, 5, 6]},
    )
    assert reason_text.render(reason, "en") == reason.text
    assert reason_text.render(reason, "zh-CN") == (
        "床位传感器在 30 晚中有 3 晚无数据（4,5,6 日）；离线不等于不在床，但时间过长，无法在未见的情况下付款"
    )
    homes = Reason(code="duplicate_claim", text="also claimed by A, B, ...", args={"homes": ["A", "B"]})
    assert reason_text.render(homes, "zh-CN").startswith("A、B 也申领了此人")
    variant = Reason(code="wrong_bed_type", text="...", args={"bed_code": "B-1", "variant": "home_care"})
    assert reason_text.render(variant, "zh-CN") == "床位 B-1 是家庭养老床位，不是机构床位"


def test_a_reason_without_its_values_or_template_is_given_in_english() -> None:
    stored_before = Reason(code="unknown_person", text="person code X is not registered at this home")  # no args
    assert reason_text.render(stored_before, "zh-CN") == stored_before.text
    unknown = Reason(code="a_code_from_the_future", text="something new", args={"count": 1})
    assert reason_text.render(unknown, "zh-CN") == "something new"


def test_a_programme_capability_or_bed_kind_is_named_in_chinese_and_left_a_code_in_english() -> None:
    schedule = Reason(
        code="no_schedule",
        text="no schedule of old_age_allowance is in force for this home's region in 2026-10",
        args={"programme": "old_age_allowance", "month": "2026-10"},
    )
    assert reason_text.render(schedule, "en") == schedule.text
    assert reason_text.render(schedule, "zh-CN") == "2026-10 本机构所在区划没有 高龄津贴 的有效补贴标准"
    rate = Reason(
        code="no_rate",
        text="schedule 7 has no amount for a nursing bed and capability partly_disabled",
        args={"schedule_id": 7, "bed_kind": "nursing", "capability": "partly_disabled"},
    )
    assert reason_text.render(rate, "en") == rate.text
    assert reason_text.render(rate, "zh-CN") == "标准 7 对 护理型 床位、能力等级 半失能 没有金额"
    unnamed = Reason(code="no_schedule", text="...", args={"programme": "a_new_programme", "month": "2026-10"})
    assert "a_new_programme" in reason_text.render(unnamed, "zh-CN")  # a code without a name is shown as it is


def test_the_english_export_headers_are_the_column_codes_and_the_chinese_ones_names() -> None:
    for column in (*LINE_COLUMNS, *TOTAL_COLUMNS):
        assert reason_text.named("export_col", column, "en") == column
        assert re.search(r"[\u4e00-\u9fff]", reason_text.named("export_col", column, "zh-CN")), column
    assert headers(LINE_COLUMNS, "en") == list(LINE_COLUMNS)
    assert len(set(headers(LINE_COLUMNS, "zh-CN"))) == len(LINE_COLUMNS)  # no two columns named alike
    assert len(set(headers(TOTAL_COLUMNS, "zh-CN"))) == len(TOTAL_COLUMNS)
