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

The rule is applied here only, to every read of a claim's lines (:func:`eldercare.platform.subsidy.reports.
claim_view` takes the reader), so the JSON, the CSV and XLSX exports and the pages show the same. What is not
known to be the home's own is withheld: a death reason or record stored before the marks existed, too.
"""

from __future__ import annotations

from typing import Any, Final

from eldercare.platform.auth.scope import Principal
from eldercare.platform.subsidy import reason_text
from eldercare.platform.subsidy.access import SEE_ELSEWHERE
from eldercare.platform.subsidy.models import ClaimView, LineVerdict, Reason

DEATH_CODES: Final = frozenset({"died_before_month", "claims_after_death"})
DUPLICATE_CODES: Final = frozenset({"duplicate_claim", "duplicate_unresolved", "duplicate_resolved"})
WITHHELD: Final = "elsewhere"  # the variant of a reason said without what was recorded elsewhere
_WITHHELD_MARK: Final[dict[str, Any]] = {"elsewhere": True}


def sees_elsewhere(principal: Principal) -> bool:
    return principal.role in SEE_ELSEWHERE


def for_reader(view: ClaimView, principal: Principal) -> ClaimView:
    """The claim as ``principal`` may read it (the view itself for a supervisor)."""
    if sees_elsewhere(principal):
        return view
    return view.model_copy(update={"lines": [_line(line) for line in view.lines]})


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
