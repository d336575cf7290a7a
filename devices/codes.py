"""One code per institution, bed and person (一院一码, 一床一码, 一人一码), and the resident ID number.

Institution code
    The unified social credit code (统一社会信用代码) of GB 32100-2015: 18 characters from the 31-character
    alphabet ``0-9 A-Y`` without ``I O S V Z``. Position 1 is the registration department (``1`` institutional
    staffing: public homes are ``12``, 事业单位; ``5`` civil affairs: private non-profit homes are ``52``,
    民办非企业单位; ``9`` market regulation: companies are ``91``), position 2 the kind of organisation,
    positions 3-8 the administrative division code (GB/T 2260) of the registering office, positions 9-17
    the organisation code of GB 11714 (itself ending in a check character) and position 18 the check
    character: ``(31 - Σ vᵢ·wᵢ mod 31) mod 31`` with ``wᵢ = 3^(i-1) mod 31`` = 1, 3, 9, 27, 19, 26, ...

Bed code and person code
    Issued by the platform: a prefix letter (``B`` for a bed, ``P`` for a person), 9 random characters and
    one check character, 11 characters in all, e.g. ``B7K2MX9Q4HT``. They use the same 31-character alphabet
    as the institution code (no ``I O S V Z``, so nothing reads as ``1 0 5 U 2`` on a printed QR label) and
    the same arithmetic: a pure check system modulo the prime 31 with radix 3 (ISO/IEC 7064 style). With
    values ``v₀ .. v₁₀`` (prefix first, check last) a code is valid iff::

        Σ vᵢ · 3^(10-i) ≡ 0  (mod 31)

    Every single substitution changes the sum by ``(v' - v)·3ᵏ``, and every transposition of two different
    characters at positions ``j < k`` by ``(vⱼ - vₖ)·3^(10-k)·(3^(k-j) - 1)``. Neither is 0 modulo 31,
    because 31 is prime, ``0 < |v' - v| < 31`` and 3 has order 30 modulo 31 (so ``3^(k-j) ≠ 1`` for
    ``k - j ≤ 10``). The check character therefore catches every single-character error and every swap of
    two characters, adjacent or not; the prefix is inside the sum, so a bed code is never a person code.
    An ISO/IEC 7064 hybrid system (MOD 37,36) would also need ``I`` and ``O``, and MOD 37-2 a ``*``.

Resident ID number
    居民身份证号 of GB 11643-1999: 6-digit region code, birth date ``YYYYMMDD``, 3-digit sequence (odd for
    men, even for women) and the ISO 7064 MOD 11-2 check character (``0-9`` or ``X``). It is personal data:
    :class:`IdNumber` shows itself masked, and no error message here repeats its digits.

Random generation takes a :class:`random.Random` explicitly: pass :class:`random.SystemRandom` where codes
are issued for real, a seeded ``Random`` in simulators and tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Final, Literal

__all__ = [
    "CODE_ALPHABET",
    "CodeError",
    "IdNumber",
    "InstitutionKind",
    "Sex",
    "generate_id_number",
    "generate_uscc",
    "id_check_char",
    "new_bed_code",
    "new_person_code",
    "org_code_check_char",
    "parse_id_number",
    "uscc_check_char",
    "validate_bed_code",
    "validate_person_code",
    "validate_uscc",
]

CODE_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""GB 32100's 31 characters in value order (``0`` = 0 ... ``Y`` = 30); bed and person codes use them too."""

_VALUE: Final = {char: value for value, char in enumerate(CODE_ALPHABET)}
_MODULUS: Final = 31
_RADIX: Final = 3
_USCC_WEIGHTS: Final = tuple(pow(_RADIX, i, _MODULUS) for i in range(17))
_DEPARTMENTS: Final = frozenset("123456789ANY")
_ALPHABET_TEXT: Final = "0-9 and A-Y without I, O, S, V, Z"

_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)

_ID_WEIGHTS: Final = tuple(pow(2, 17 - i, 11) for i in range(17))  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
_ID_CHECK: Final = "10X98765432"
_ID_MIN_YEAR: Final = 1900
# Province-level prefixes of GB/T 2260, 83 for Taiwan residents' residence permits, and 9x for the foreigners'
# permanent residence ID card of 2023, which follows the same layout and check character.
_ID_PROVINCES: Final = frozenset(
    [
        *(f"{n}" for n in range(11, 16)),
        *(f"{n}" for n in range(21, 24)),
        *(f"{n}" for n in range(31, 38)),
        *(f"{n}" for n in range(41, 47)),
        *(f"{n}" for n in range(50, 55)),
        *(f"{n}" for n in range(61, 66)),
        "71",
        "81",
        "82",
        "83",
        *(f"{n}" for n in range(90, 100)),
    ]
)
_CHINA: Final = timezone(timedelta(hours=8), "Asia/Shanghai")

_PLATFORM_CODE_LENGTH: Final = 11
_BED_PREFIX: Final = "B"
_PERSON_PREFIX: Final = "P"

Sex = Literal["male", "female"]


class CodeError(ValueError):
    """A code that is not valid: ``field`` names the code (``uscc``, ``id_number``, ...), ``reason`` says why.

    Reasons never repeat the digits of an ID number.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(field, reason)
        self.field = field
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def _normalise(text: str) -> str:
    return text.strip().upper()


def _check_charset(field: str, text: str) -> None:
    for position, char in enumerate(text, start=1):
        if char not in _VALUE:
            raise CodeError(field, f"character {char!r} at position {position} is not allowed ({_ALPHABET_TEXT})")


def _is_digits(text: str) -> bool:
    return len(text) > 0 and all("0" <= char <= "9" for char in text)


def _region6(field: str, region6: str) -> str:
    if len(region6) != 6 or not _is_digits(region6):
        raise CodeError(field, "an administrative division code has 6 digits (GB/T 2260)")
    return region6


# --- institution: unified social credit code -----------------------------------------------------


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a unified social credit code."""
    if len(first17) != 17:
        raise CodeError("uscc", f"the check character is computed over 17 characters, got {len(first17)}")
    _check_charset("uscc", first17)
    total = sum(_VALUE[char] * weight for char, weight in zip(first17, _USCC_WEIGHTS, strict=True))
    return CODE_ALPHABET[-total % _MODULUS]


def org_code_check_char(first8: str) -> str:
    """The GB 11714 check character of an organisation code (positions 9-17 of a USCC) from its first 8.

    Letters count A=10 ... Z=35; the check is ``11 - Σ cᵢ·wᵢ mod 11`` with 10 written ``X`` and 11 ``0``.
    """
    if len(first8) != 8 or not all(char.isascii() and char.isalnum() and not char.islower() for char in first8):
        raise CodeError("organisation_code", "the check character is computed over 8 digits or capital letters")
    total = sum(int(char, 36) * weight for char, weight in zip(first8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def validate_uscc(code: str) -> str:
    """Return the unified social credit code normalised (trimmed, upper case), or raise :class:`CodeError`.

    Checks the length, the alphabet, the registration department (position 1), that positions 3-8 are a
    6-digit division code and the GB 32100 check character. The organisation code's own GB 11714 check
    character is not enforced: GB 32100 does not make it part of the code's validity.
    """
    text = _normalise(code)
    if len(text) != 18:
        raise CodeError("uscc", f"must be 18 characters, got {len(text)}")
    _check_charset("uscc", text)
    if text[0] not in _DEPARTMENTS:
        raise CodeError("uscc", f"registration department {text[0]!r} (position 1) is not 1-9, A, N or Y")
    if not _is_digits(text[2:8]):
        raise CodeError("uscc", "positions 3-8 must be the 6 digits of an administrative division code")
    if uscc_check_char(text[:17]) != text[17]:
        raise CodeError("uscc", "check character does not match (a character mistyped or two swapped)")
    return text


class InstitutionKind(StrEnum):
    """The registration department and kind of organisation (positions 1-2) of the common kinds of home."""

    PUBLIC = "12"  # 机构编制 / 事业单位: a public home
    NON_PROFIT = "52"  # 民政 / 民办非企业单位 (社会服务机构): a private non-profit home
    COMPANY = "91"  # 市场监管 / 企业: a home run by a company


def generate_uscc(rng: random.Random, *, region6: str, kind: InstitutionKind | None = None) -> str:
    """A plausible unified social credit code registered in ``region6`` (test and simulator data).

    The organisation code is either 8 digits (issued before 2015) or ``MA`` and 6 characters (issued since),
    followed by its GB 11714 check character; the whole ends in the GB 32100 check character.
    """
    _region6("region6", region6)
    prefix = (kind or rng.choice(list(InstitutionKind))).value
    if rng.random() < 0.5:
        body = "".join(rng.choice("0123456789") for _ in range(8))
    else:
        body = "MA" + "".join(rng.choice(CODE_ALPHABET) for _ in range(6))
    first17 = prefix + region6 + body + org_code_check_char(body)
    return first17 + uscc_check_char(first17)


# --- bed and person codes ------------------------------------------------------------------------


def _platform_sum(text: str) -> int:
    total = 0
    for char in text:
        total = (total * _RADIX + _VALUE[char]) % _MODULUS
    return total


def _new_platform_code(rng: random.Random, prefix: str) -> str:
    body = prefix + "".join(rng.choice(CODE_ALPHABET) for _ in range(_PLATFORM_CODE_LENGTH - 2))
    return body + CODE_ALPHABET[-_platform_sum(body) * _RADIX % _MODULUS]


def _validate_platform_code(code: str, *, field: str, prefix: str, noun: str) -> str:
    text = _normalise(code)
    if len(text) != _PLATFORM_CODE_LENGTH:
        raise CodeError(field, f"must be {_PLATFORM_CODE_LENGTH} characters, got {len(text)}")
    if text[0] != prefix:
        raise CodeError(field, f"a {noun} code starts with {prefix!r}, not {text[0]!r}")
    _check_charset(field, text)
    if _platform_sum(text) != 0:
        raise CodeError(field, "check character does not match (a character mistyped or two swapped)")
    return text


def new_bed_code(rng: random.Random) -> str:
    """A new bed code: ``B``, 9 random characters and the check character."""
    return _new_platform_code(rng, _BED_PREFIX)


def new_person_code(rng: random.Random) -> str:
    """A new person code: ``P``, 9 random characters and the check character. It carries no personal data."""
    return _new_platform_code(rng, _PERSON_PREFIX)


def validate_bed_code(code: str) -> str:
    """Return the bed code normalised (trimmed, upper case), or raise :class:`CodeError`."""
    return _validate_platform_code(code, field="bed_code", prefix=_BED_PREFIX, noun="bed")


def validate_person_code(code: str) -> str:
    """Return the person code normalised (trimmed, upper case), or raise :class:`CodeError`."""
    return _validate_platform_code(code, field="person_code", prefix=_PERSON_PREFIX, noun="person")


# --- resident ID number --------------------------------------------------------------------------


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character (``0-9`` or ``X``) of the first 17 digits of an ID number."""
    if len(first17) != 17 or not _is_digits(first17):
        raise CodeError("id_number", "the check character is computed over 17 digits")
    total = sum(int(char) * weight for char, weight in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def _today_in_china() -> date:
    return datetime.now(_CHINA).date()


def _check_birth_date(field: str, birth: date, today: date) -> None:
    if birth.year < _ID_MIN_YEAR:
        raise CodeError(field, f"birth year is before {_ID_MIN_YEAR}")
    if birth > today:
        raise CodeError(field, "birth date is in the future")


@dataclass(frozen=True, slots=True, repr=False)
class IdNumber:
    """A parsed resident ID number. Its ``repr`` and ``str`` show only :attr:`masked`."""

    number: str
    region_code: str
    birth_date: date
    sex: Sex

    @property
    def masked(self) -> str:
        """The first 6 and last 4 characters, the birth date hidden: ``420502********1234``."""
        return f"{self.number[:6]}{'*' * 8}{self.number[14:]}"

    def age_on(self, day: date) -> int:
        """Age in completed years on ``day`` (someone born on 29 February gets a year older on 1 March)."""
        if day < self.birth_date:
            raise ValueError("the day is before the birth date")
        before_birthday = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - int(before_birthday)

    def __repr__(self) -> str:
        return f"IdNumber({self.masked})"


def parse_id_number(text: str, *, today: date | None = None) -> IdNumber:
    """Parse and check an 18-character resident ID number; raise :class:`CodeError` naming what is wrong.

    ``today`` (default: today in China) bounds the birth date.
    """
    field = "id_number"
    number = _normalise(text)
    if len(number) != 18:
        extra = " (15-digit numbers from before 1999 are not accepted)" if len(number) == 15 else ""
        raise CodeError(field, f"must be 18 characters, got {len(number)}{extra}")
    for position, char in enumerate(number[:17], start=1):
        if not "0" <= char <= "9":
            raise CodeError(field, f"position {position} must be a digit, not {char!r}")
    if not ("0" <= number[17] <= "9" or number[17] == "X"):
        raise CodeError(field, f"position 18 must be a digit or X, not {number[17]!r}")
    if number[:2] not in _ID_PROVINCES:
        raise CodeError(field, "positions 1-2 are not a province-level region code")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise CodeError(field, "birth date (positions 7-14) is not a real date") from None
    _check_birth_date(field, birth, today or _today_in_china())
    if id_check_char(number[:17]) != number[17]:
        raise CodeError(field, "check digit does not match (a digit mistyped or two swapped)")
    sex: Sex = "male" if int(number[16]) % 2 == 1 else "female"
    return IdNumber(number=number, region_code=number[:6], birth_date=birth, sex=sex)


def generate_id_number(rng: random.Random, *, region6: str, birth_date: date, sex: Sex) -> str:
    """A well-formed ID number with a random sequence code (test and simulator data only)."""
    _region6("region6", region6)
    if region6[:2] not in _ID_PROVINCES:
        raise CodeError("region6", "positions 1-2 are not a province-level region code")
    _check_birth_date("birth_date", birth_date, _today_in_china())
    parity = 1 if sex == "male" else 0
    sequence = rng.randrange(0, 100) * 10 + rng.choice(range(parity, 10, 2))
    if sequence == 0:  # sequence code 000 is not issued
        sequence = 2
    first17 = f"{region6}{birth_date:%Y%m%d}{sequence:03d}"
    return first17 + id_check_char(first17)
