"""What of a verdict its reader may see: what another home or the death register recorded of a person is for
supervisors only.

A line's verdict may rest on records that are not the claiming home's own: a death that another home recorded,
or that the civil-affairs death register holds, for the same person (by keyed ID hash); the other homes that
claim the same person for the month. Verification stores them in full and marks them ``elsewhere``
(``evidence_sql``, ``reasons_sql``). A supervisor (:data:`~eldercare.platform.subsidy.access.SEE_ELSEWHERE`)
reads them as stored. Anyone else - the home's head - reads the verdict and a reason that says where to ask,
without the other home, the date, the place or the source: otherwise registering an ID number and claiming
for it would tell a home whether, when and where the person died in another home, and which homes claim them.
What the home recorded itself (its own resident's death, stays, hospital stays, beds, sensors) stays in full.

A regulator supervises their own region only. They read the records of every home of it as stored; a home outside
it (a death it recorded, its claim for the same person) they read as "a home outside your region" with the city
(4 digits of its division code) it lies in: enough to know whom to ask, not which home. An admin reads everything.
The homes' regions are looked up when the claim is read (:func:`homes_named`), since a run may span more than the
reader's region and a home's region may change; a home whose region is not known counts as outside.

The rule is applied here only, to every read of a claim's lines (:func:`eldercare.platform.subsidy.reports.
claim_view` takes the reader), so the JSON, the CSV and XLSX exports and the pages show the same. What is not
known to be the home's own is withheld: a death reason or record stored before the marks existed, too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from eldercare.platform.auth.scope import Principal, Role, region_covers
from eldercare.platform.subsidy import reason_text
from eldercare.platform.subsidy.access import SEE_ELSEWHERE
from eldercare.platform.subsidy.models import ClaimView, LineVerdict, Reason

DEATH_CODES: Final = frozenset({"died_before_month", "claims_after_death"})
DUPLICATE_CODES: Final = frozenset({"duplicate_claim", "duplicate_unresolved", "duplicate_resolved"})
WITHHELD: Final = "elsewhere"  # the variant of a reason said without what was recorded elsewhere
_WITHHELD_MARK: Final[dict[str, Any]] = {"elsewhere": True}
OUTSIDE: Final = reason_text.OUTSIDE  # the cities of the homes outside the reader's region that a list named
_NO_REGIONS: Final[Mapping[str, str]] = MappingProxyType({})


def sees_elsewhere(principal: Principal) -> bool:
    return principal.role in SEE_ELSEWHERE


def for_reader(view: ClaimView, principal: Principal, *, home_regions: Mapping[str, str] = _NO_REGIONS) -> ClaimView:
    """The claim as ``principal`` may read it: the view itself for an admin; for a regulator without the identity
    of homes outside their region (``home_regions``: each named home's division code, by institution code)."""
    if not sees_elsewhere(principal):
        return view.model_copy(update={"lines": [_line(line) for line in view.lines]})
    if principal.role is not Role.REGULATOR:
        return view

    def city(code: str) -> str | None:
        """None for a home of the reader's region; else the city (4 digits) the home lies in, "" if not known."""
        region = home_regions.get(code)
        if region is not None and principal.region_code and region_covers(principal, region):
            return None
        return (region or "")[:4]

    return view.model_copy(update={"lines": [_line_in_region(line, city) for line in view.lines]})


def homes_named(view: ClaimView) -> set[str]:
    """The institution codes of the homes the view's reasons and evidence name (whose region :func:`for_reader`
    needs for a regulator)."""
    named: set[str] = set()
    for line in view.lines:
        for reason in line.reasons:
            if reason.code in DUPLICATE_CODES:
                named.update(str(code) for code in reason.args.get("homes") or [])
        evidence = line.evidence or {}
        named.update(str(r["home_code"]) for r in evidence.get("records") or [] if r.get("home_code"))
        duplicate = evidence.get("duplicate")
        if isinstance(duplicate, dict):
            named.update(str(code) for code in duplicate.get("other_homes") or [])
    return named


def _line_in_region(line: LineVerdict, city: Callable[[str], str | None]) -> LineVerdict:
    reasons = [_reason_in_region(r, city) for r in line.reasons]
    evidence = _evidence_in_region(line.evidence, city)
    if reasons == line.reasons and evidence == line.evidence:
        return line
    return line.model_copy(update={"reasons": reasons, "evidence": evidence})


def _split(codes: list[Any], city: Callable[[str], str | None]) -> tuple[list[Any], list[str]]:
    """The codes of homes in the reader's region, and the cities of the others."""
    cities = [(code, city(str(code))) for code in codes]
    return [code for code, c in cities if c is None], sorted(c for _, c in cities if c is not None)


def _reason_in_region(reason: Reason, city: Callable[[str], str | None]) -> Reason:
    if reason.code not in DUPLICATE_CODES or not reason.args.get("homes"):
        return reason
    inside, outside = _split(list(reason.args["homes"]), city)
    if not outside:
        return reason
    said = Reason(code=reason.code, text="", args={**reason.args, "homes": inside, OUTSIDE: outside},
                  elsewhere=reason.elsewhere)  # fmt: skip
    said.text = reason_text.render(said, "en")
    return reason_text.with_chinese(said)


def _evidence_in_region(evidence: dict[str, Any] | None, city: Callable[[str], str | None]) -> dict[str, Any] | None:
    if not evidence:
        return evidence
    out = dict(evidence)
    records: list[dict[str, Any]] = []
    for record in evidence.get("records") or []:
        where = city(str(record["home_code"])) if record.get("home_code") else None
        if where is None:
            records.append(record)
        else:  # another region's home: the city it lies in, not the home
            kept = {k: v for k, v in record.items() if k not in ("home_code", "home_name")}
            records.append({**kept, "home_outside_region": True, "home_city": where})
    if "records" in evidence:
        out["records"] = records
    duplicate = evidence.get("duplicate")
    if isinstance(duplicate, dict) and duplicate.get("other_homes"):
        inside, outside = _split(list(duplicate["other_homes"]), city)
        if outside:
            out["duplicate"] = {**duplicate, "other_homes": inside, OUTSIDE: outside}
    return out


def _line(line: LineVerdict) -> LineVerdict:
    return line.model_copy(update={"reasons": [_reason(r) for r in line.reasons], "evidence": _evidence(line.evidence)})


def _from_elsewhere(reason: Reason) -> bool:
    if reason.code in DUPLICATE_CODES:
        return True  # always another home's claim
    return reason.code in DEATH_CODES and reason.elsewhere is not False


def _reason(reason: Reason) -> Reason:
    if not _from_elsewhere(reason):
        return reason
    said = Reason(code=reason.code, text="", args={"variant": WITHHELD}, elsewhere=True)
    said.text = reason_text.render(said, "en")
    return reason_text.with_chinese(said)


def _evidence(evidence: dict[str, Any] | None) -> dict[str, Any] | None:
    if not evidence:
        return evidence
    out = dict(evidence)
    records: list[dict[str, Any]] = list(evidence.get("records") or [])
    kept = [r for r in records if r.get("kind") != "death" or r.get("elsewhere") is False]
    foreign = len(kept) < len(records)
    if foreign:  # one mark for them all: how many, and in which registers, would say more than "elsewhere"
        out["records"] = [*kept, {"kind": "death", **_WITHHELD_MARK}]
    death = evidence.get("death")
    own_death = isinstance(death, dict) and death.get("elsewhere") is False
    if (death is not None or foreign) and not own_death:
        # the earliest death is another home's or the register's: its date, and the nights after it, are theirs
        out["death"] = dict(_WITHHELD_MARK)
        out["nights"] = {**(evidence.get("nights") or {}), "after_death": None}
        out["counts"] = {**(evidence.get("counts") or {}), "after_death": None}
    if evidence.get("duplicate") is not None:
        out["duplicate"] = dict(_WITHHELD_MARK)
    return out
