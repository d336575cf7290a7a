"""The code scheme: institution (USCC), bed and person codes, and the resident ID number."""

from __future__ import annotations

import pickle
import random
import re
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eldercare.devices import codes, topics
from eldercare.devices.codes import CodeError

# Codes published by their holders (business licences, registration certificates), not made by our algorithm.
REAL_USCCS = [
    "91350100M000100Y43",  # the worked example of GB 32100-2015
    "914403001922038216",  # Huawei Technologies Co., Ltd.
    "91440300708461136T",  # Shenzhen Tencent Computer Systems Co., Ltd.
    "91330100716105852F",  # Alibaba (China) Co., Ltd.
    "91110108551385082Q",
    "112302070019030687",
    "1134082855783407XL",
    "51610700305332460K",
    "11610923MB2900168E",
    "91341000MA2N0ABGXX",
]

# The two worked examples of GB 11643-1999.
STANDARD_ID_FEMALE = "11010519491231002X"
STANDARD_ID_1880 = "440524188001010014"

TODAY = date(2025, 11, 22)

# no example database in the work tree, no per-example deadline on a slow CI machine
PROPERTY = settings(database=None, deadline=None)


def _error(func: object, *args: object, **kwargs: object) -> CodeError:
    assert callable(func)
    with pytest.raises(CodeError) as info:
        func(*args, **kwargs)
    return info.value


# --- institution -----------------------------------------------------------------------------------


def test_alphabet_is_the_31_characters_of_gb_32100() -> None:
    assert len(codes.CODE_ALPHABET) == 31
    assert set(codes.CODE_ALPHABET).isdisjoint("IOSVZ")
    assert sorted(codes.CODE_ALPHABET) == list(codes.CODE_ALPHABET)


def test_topic_grammar_uses_the_same_alphabet_for_institutions() -> None:
    for char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        accepted = re.fullmatch(topics.INSTITUTION_PATTERN, char * 18) is not None
        assert accepted == (char in codes.CODE_ALPHABET), char


@pytest.mark.parametrize("code", REAL_USCCS)
def test_real_codes_are_valid(code: str) -> None:
    assert codes.validate_uscc(code) == code
    assert codes.uscc_check_char(code[:17]) == code[17]
    assert codes.org_code_check_char(code[8:16]) == code[16]


def test_gb_32100_worked_example_step_by_step() -> None:
    # 9 1 3 5 0 1 0 0 M 0 0 0 1 0 0 Y 4 with M = 21 and Y = 30 in the USCC alphabet
    values = [9, 1, 3, 5, 0, 1, 0, 0, 21, 0, 0, 0, 1, 0, 0, 30, 4]
    weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    total = sum(v * w for v, w in zip(values, weights, strict=True))
    assert (31 - total % 31) % 31 == 3
    assert codes.uscc_check_char("91350100M000100Y4") == "3"
    # GB 11714 counts letters from A = 10 over the whole Latin alphabet: M = 22, Y = 34
    assert codes.org_code_check_char("M000100Y") == "4"


def test_organisation_code_check_maps_10_to_x_and_11_to_0() -> None:
    assert codes.org_code_check_char("MA2N0ABG") == "X"
    assert codes.org_code_check_char("00000000") == "0"


def test_validate_normalises_case_and_spaces() -> None:
    assert codes.validate_uscc("  91350100m000100y43\n") == "91350100M000100Y43"


@pytest.mark.parametrize(
    ("code", "reason_part"),
    [
        ("91350100M000100Y4", "18 characters, got 17"),
        ("91350100M000100Y433", "18 characters, got 19"),
        ("91350100MO00100Y43", "'O' at position 10"),
        ("9135010OM000100Y43", "'O' at position 8"),
        ("S1350100M000100Y43", "'S' at position 1"),
        ("B1350100M000100Y43", "registration department 'B'"),
        ("913501A0M000100Y43", "positions 3-8"),
        ("91350100M000100Y44", "check character does not match"),
        ("19350100M000100Y43", "check character does not match"),  # adjacent swap
    ],
)
def test_invalid_codes_name_the_reason(code: str, reason_part: str) -> None:
    error = _error(codes.validate_uscc, code)
    assert error.field == "uscc"
    assert reason_part in error.reason


def test_check_char_requires_17_valid_characters() -> None:
    assert "17 characters" in _error(codes.uscc_check_char, "9135").reason
    assert "'I'" in _error(codes.uscc_check_char, "91350100I000100Y4").reason


def test_every_single_substitution_of_a_real_code_is_rejected() -> None:
    for code in REAL_USCCS:
        for position in range(18):
            for char in codes.CODE_ALPHABET:
                if char != code[position]:
                    with pytest.raises(CodeError):
                        codes.validate_uscc(code[:position] + char + code[position + 1 :])


@PROPERTY
@given(seed=st.integers(min_value=0, max_value=2**32), region=st.sampled_from(["420502", "110105", "350100"]))
def test_generated_codes_are_valid_and_plausible(seed: int, region: str) -> None:
    code = codes.generate_uscc(random.Random(seed), region6=region)
    assert codes.validate_uscc(code) == code
    assert code[:2] in {kind.value for kind in codes.InstitutionKind}
    assert code[2:8] == region
    assert codes.org_code_check_char(code[8:16]) == code[16]
    assert topics.parse_topic(topics.uplink(code, "GW-0001", topics.Channel.ALARM)).institution == code


def test_generation_is_deterministic_for_a_seed_and_honours_kind() -> None:
    first = codes.generate_uscc(random.Random(5), region6="420502", kind=codes.InstitutionKind.NON_PROFIT)
    again = codes.generate_uscc(random.Random(5), region6="420502", kind=codes.InstitutionKind.NON_PROFIT)
    assert first == again
    assert first.startswith("52420502")


def test_generation_rejects_a_bad_region() -> None:
    error = _error(codes.generate_uscc, random.Random(1), region6="4205")
    assert error.field == "region6"


@PROPERTY
@given(st.text(alphabet=codes.CODE_ALPHABET, min_size=17, max_size=17))
def test_any_17_characters_complete_to_exactly_one_valid_code(first17: str) -> None:
    valid = [c for c in codes.CODE_ALPHABET if codes.uscc_check_char(first17) == c]
    assert valid == [codes.uscc_check_char(first17)]


# --- bed and person codes --------------------------------------------------------------------------


def _substitutions(code: str) -> list[str]:
    return [
        code[:i] + char + code[i + 1 :] for i in range(len(code)) for char in codes.CODE_ALPHABET if char != code[i]
    ]


def _transpositions(code: str) -> list[str]:
    swapped = []
    for i in range(len(code)):
        for j in range(i + 1, len(code)):
            if code[i] != code[j]:
                chars = list(code)
                chars[i], chars[j] = chars[j], chars[i]
                swapped.append("".join(chars))
    return swapped


def _accepts(validate: object, code: str) -> bool:
    assert callable(validate)
    try:
        validate(code)
    except CodeError:
        return False
    return True


@pytest.mark.parametrize(
    ("new", "validate", "prefix"),
    [
        (codes.new_bed_code, codes.validate_bed_code, "B"),
        (codes.new_person_code, codes.validate_person_code, "P"),
    ],
)
def test_platform_codes_catch_every_substitution_and_transposition(new: object, validate: object, prefix: str) -> None:
    assert callable(new)
    rng = random.Random(20251122)
    for _ in range(300):
        code = new(rng)
        assert isinstance(code, str)
        assert len(code) == 11
        assert code[0] == prefix
        assert set(code) <= set(codes.CODE_ALPHABET)
        assert _accepts(validate, code)
        # every one of the 11 x 30 single substitutions, the prefix and the check character included
        assert not any(_accepts(validate, wrong) for wrong in _substitutions(code))
        # every swap of two different characters, adjacent or not
        assert not any(_accepts(validate, wrong) for wrong in _transpositions(code))


def test_platform_check_is_algebraically_what_the_docstring_says() -> None:
    code = codes.new_bed_code(random.Random(1))
    values = [codes.CODE_ALPHABET.index(char) for char in code]
    assert sum(v * 3 ** (10 - i) for i, v in enumerate(values)) % 31 == 0


def test_platform_codes_cover_the_alphabet_in_every_position() -> None:
    rng = random.Random(2)
    seen: list[set[str]] = [set() for _ in range(11)]
    for _ in range(3000):
        for position, char in enumerate(codes.new_person_code(rng)):
            seen[position].add(char)
    assert seen[0] == {"P"}
    assert all(chars == set(codes.CODE_ALPHABET) for chars in seen[1:])


def test_bed_and_person_codes_are_not_interchangeable() -> None:
    rng = random.Random(3)
    bed, person = codes.new_bed_code(rng), codes.new_person_code(rng)
    error = _error(codes.validate_person_code, bed)
    assert error.field == "person_code"
    assert "starts with 'P'" in error.reason
    assert _error(codes.validate_bed_code, person).field == "bed_code"
    # even with the prefix swapped, the check character tells
    assert not _accepts(codes.validate_person_code, "P" + bed[1:])


def test_platform_codes_are_normalised() -> None:
    code = codes.new_bed_code(random.Random(4))
    assert codes.validate_bed_code(f"  {code.lower()} \t") == code


@pytest.mark.parametrize(
    ("text", "reason_part"),
    [
        ("B12345", "11 characters, got 6"),
        ("B0000000000O", "11 characters, got 12"),
        ("B00000000O0", "'O' at position 10"),
        ("B0000I00000", "'I' at position 6"),
        ("X0000000000", "starts with 'B'"),
    ],
)
def test_invalid_bed_codes_name_the_reason(text: str, reason_part: str) -> None:
    error = _error(codes.validate_bed_code, text)
    assert error.field == "bed_code"
    assert reason_part in error.reason


def test_all_zero_payload_gets_check_character_4() -> None:
    # B = 11; 11 * 3**10 = 649539 = 31 * 20952 + 27; the check must add 4 (31 - 27) -> '4'
    assert codes.validate_bed_code("B0000000004") == "B0000000004"
    assert not _accepts(codes.validate_bed_code, "B0000000000")


# --- resident ID number ----------------------------------------------------------------------------


def test_standard_example_parses() -> None:
    parsed = codes.parse_id_number(STANDARD_ID_FEMALE, today=TODAY)
    assert parsed.number == STANDARD_ID_FEMALE
    assert parsed.region_code == "110105"
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.sex == "female"
    assert parsed.masked == "110105********002X"
    assert parsed.age_on(date(2025, 12, 30)) == 75
    assert parsed.age_on(date(2025, 12, 31)) == 76


def test_lower_case_x_and_spaces_are_accepted() -> None:
    assert codes.parse_id_number(" 11010519491231002x ", today=TODAY).number == STANDARD_ID_FEMALE


def test_the_1880_example_has_a_valid_check_digit_but_is_too_old() -> None:
    assert codes.id_check_char(STANDARD_ID_1880[:17]) == STANDARD_ID_1880[17]
    error = _error(codes.parse_id_number, STANDARD_ID_1880, today=TODAY)
    assert error.field == "id_number"
    assert "before 1900" in error.reason


def test_mod_11_2_weights() -> None:
    # ISO 7064 MOD 11-2: weights 2^(17-i) mod 11, results 0..10 map to 1 0 X 9 8 7 6 5 4 3 2
    assert [pow(2, 17 - i, 11) for i in range(17)] == [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    assert codes.id_check_char("11010519491231002") == "X"


def _with_check(first17: str) -> str:
    return first17 + codes.id_check_char(first17)


@pytest.mark.parametrize(
    ("number", "reason_part"),
    [
        ("11010519491231002", "18 characters, got 17"),
        ("110105491231002", "15-digit numbers"),
        ("1101051949123100A2", "position 17 must be a digit"),
        ("11010519491231002Y", "position 18 must be a digit or X"),
        (_with_check("00010519491231002"), "province-level"),
        (_with_check("11010519490229002"), "not a real date"),
        (_with_check("11010519491301002"), "not a real date"),
        (_with_check("11010520251123002"), "in the future"),
        ("110105194912310029", "check digit does not match"),
        ("11010519491231020X", "check digit does not match"),  # adjacent swap 02 -> 20
    ],
)
def test_invalid_id_numbers_name_the_reason(number: str, reason_part: str) -> None:
    error = _error(codes.parse_id_number, number, today=TODAY)
    assert error.field == "id_number"
    assert reason_part in error.reason


def test_errors_never_repeat_the_number() -> None:
    for number in ["110105194912310029", _with_check("11010519490229002"), _with_check("11010520251123002")]:
        error = _error(codes.parse_id_number, number, today=TODAY)
        assert number[6:14] not in str(error)
        assert number[:6] not in str(error)


def test_id_number_hides_itself_in_repr() -> None:
    parsed = codes.parse_id_number(STANDARD_ID_FEMALE, today=TODAY)
    assert STANDARD_ID_FEMALE not in repr(parsed)
    assert "19491231" not in f"{parsed}"


def test_birthday_on_29_february() -> None:
    number = codes.generate_id_number(random.Random(1), region6="420502", birth_date=date(1944, 2, 29), sex="male")
    parsed = codes.parse_id_number(number, today=TODAY)
    assert parsed.age_on(date(2025, 2, 28)) == 80
    assert parsed.age_on(date(2025, 3, 1)) == 81
    assert parsed.age_on(date(2024, 2, 29)) == 80
    with pytest.raises(ValueError, match="before the birth date"):
        parsed.age_on(date(1944, 2, 28))


def test_today_defaults_to_the_date_in_china() -> None:
    yesterday = date.today() - timedelta(days=2)
    number = codes.generate_id_number(random.Random(2), region6="420502", birth_date=yesterday, sex="female")
    assert codes.parse_id_number(number).birth_date == yesterday


@PROPERTY
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    birth=st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    sex=st.sampled_from(["male", "female"]),
    region=st.sampled_from(["420502", "110105", "650102", "810000"]),
)
def test_generated_id_numbers_round_trip(seed: int, birth: date, sex: codes.Sex, region: str) -> None:
    number = codes.generate_id_number(random.Random(seed), region6=region, birth_date=birth, sex=sex)
    parsed = codes.parse_id_number(number, today=TODAY)
    assert (parsed.region_code, parsed.birth_date, parsed.sex) == (region, birth, sex)
    assert number[14:17] != "000"


@PROPERTY
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_id_check_digit_catches_substitutions_and_adjacent_swaps(seed: int) -> None:
    number = codes.generate_id_number(random.Random(seed), region6="420502", birth_date=date(1950, 6, 15), sex="female")
    first17 = number[:17]
    for i in range(17):
        for digit in "0123456789":
            if digit != first17[i]:
                assert codes.id_check_char(first17[:i] + digit + first17[i + 1 :]) != number[17]
        if i < 16 and first17[i] != first17[i + 1]:
            swapped = first17[:i] + first17[i + 1] + first17[i] + first17[i + 2 :]
            assert codes.id_check_char(swapped) != number[17]


def test_generator_rejects_impossible_people() -> None:
    rng = random.Random(3)
    assert _error(codes.generate_id_number, rng, region6="42", birth_date=date(1950, 1, 1), sex="male").field == (
        "region6"
    )
    error = _error(codes.generate_id_number, rng, region6="420502", birth_date=date(1899, 12, 31), sex="male")
    assert error.field == "birth_date"


# --- the error type --------------------------------------------------------------------------------


def test_code_error_carries_field_and_reason_and_pickles() -> None:
    error = CodeError("bed_code", "must be 11 characters, got 3")
    assert isinstance(error, ValueError)
    assert str(error) == "bed_code: must be 11 characters, got 3"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.reason) == (error.field, error.reason)
