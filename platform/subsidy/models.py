"""Request and response models of the subsidy API."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from eldercare.platform.registry.types import Id, Note

MonthText = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}$", description="YYYY-MM")]
Code = Annotated[str, Field(max_length=40)]


class ClaimLineIn(BaseModel):
    """A line as the home writes it; checked as a whole claim (every problem reported as lines[i].field)."""

    person_code: Code | None = Field(
        default=None, description="一人一码 of the resident; may be left out of a line for a bed (its occupant counts)"
    )
    bed_code: Code | None = Field(default=None, description="一床一码; required for programmes paid per bed")
    programme: Code
    days: int | None = Field(default=None, ge=1, le=31, description="days claimed (programmes paid per bed)")
    amount: Decimal | None = Field(default=None, gt=0, le=100_000, description="yuan claimed (allowances)")
    ref: str | None = Field(default=None, max_length=64, description="the home's own reference of the line")


class ClaimIn(BaseModel):
    month: MonthText
    lines: list[ClaimLineIn] = Field(max_length=10_000)


class ClaimReceipt(BaseModel):
    claim_id: int
    institution_id: int
    month: str
    lines: int
    replaced_claim_id: int | None = Field(description="the month's previous claim, kept with its verdicts")


class Reason(BaseModel):
    code: str = Field(description="stable; the pages translate it")
    text: str = Field(description="the reason in English, with the days and records")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="the values the text names (and a variant of the wording), to say it in another language",
    )
    text_zh: str | None = Field(
        default=None, description="the reason in Chinese, filled from code and args (the English text without them)"
    )
    elsewhere: bool | None = Field(
        default=None,
        description="true: the reason rests on another home's records or the death register, whose details only"
        " supervisors see (a home reads it without them); false: on the home's own records; null: not said",
    )


class Decision(BaseModel):
    outcome: str
    payable_yuan: Decimal
    note: str
    decided_at: datetime
    decided_by: int | None


class LineVerdict(BaseModel):
    line_id: int
    line_no: int
    ref: str | None
    person_code: str | None
    bed_code: str | None
    programme: str
    days: int | None
    amount: Decimal | None
    verdict: str | None = Field(description="verified, partly_verified, rejected, manual_check; null: not verified yet")
    claimed_days: int | None
    verified_days: int | None
    claimed_yuan: Decimal | None
    supported_yuan: Decimal | None = Field(description="what the evidence supports (a manual check's proposal)")
    payable_yuan: Decimal | None = Field(description="what is paid: the decision's amount if a person decided")
    reasons: list[Reason]
    evidence: dict[str, Any] | None
    decision: Decision | None


class Totals(BaseModel):
    lines: int
    unverified: int
    verified: int
    partly_verified: int
    rejected: int
    manual_check: int
    pending: int = Field(description="manual checks not decided yet")
    claimed_yuan: Decimal
    payable_yuan: Decimal
    withheld_yuan: Decimal
    pending_yuan: Decimal = Field(description="what the evidence supports of the undecided manual checks")


class ClaimView(BaseModel):
    institution_id: int
    month: str
    claim_id: int | None
    submitted_at: datetime | None
    source: str | None
    totals: Totals
    lines: list[LineVerdict]


class HomeTotals(Totals):
    institution_id: int
    institution_code: str
    institution_name: str
    region_code: str


class DistrictTotals(Totals):
    region_code: str


class RegionTotals(BaseModel):
    month: str
    region_code: str
    homes: list[HomeTotals]
    districts: list[DistrictTotals]
    total: Totals


class RunOut(BaseModel):
    run_id: int
    region_code: str
    month: str
    homes: int
    lines: int
    verdicts: dict[str, int]
    claimed_yuan: Decimal
    payable_yuan: Decimal
    withheld_yuan: Decimal
    receivers: int
    follow_up: int
    findings: int
    ranked_homes: int
    seconds: float
    steps: dict[str, float]


class Liveness(BaseModel):
    resident_id: int
    person_code: str
    id_number_masked: str
    institution_id: int
    institution_code: str
    institution_name: str
    institution_phone: str
    programmes: list[str]
    vital_nights: int
    worn_days: int
    last_evidence: date | None
    follow_up: bool
    in_death_register: bool


class NewlyEligible(BaseModel):
    resident_id: int
    person_code: str
    id_number_masked: str
    institution_id: int
    institution_code: str
    programme: str
    since: date = Field(description="the day the person became eligible")
    reason: str
    monthly_yuan: Decimal | None
    schedule_id: int | None


class EnrolmentIn(BaseModel):
    resident_id: Id
    programme: Code
    from_month: MonthText
    reason: Annotated[Note, Field(max_length=500)] = ""


class Enrolment(BaseModel):
    id: int
    resident_id: int
    programme: str
    from_month: date
    until_month: date | None
    reason: str
    enrolled_at: datetime


class DecisionIn(BaseModel):
    line_id: Id
    outcome: Literal["verified", "partly_verified", "rejected"]
    payable_yuan: Decimal = Field(ge=0, le=1_000_000, description="what is paid (0 for rejected)")
    note: Annotated[Note, Field(min_length=4, description="what the person checked; kept with the decision")]


class AnomalyOut(BaseModel):
    institution_id: int
    institution_code: str
    institution_name: str
    run_id: int
    score: float | None = Field(description="higher: more unusual among the homes ranked together")
    rank: int | None
    ranked: int
    features: dict[str, float | None]
    drivers: list[dict[str, Any]] = Field(description="the features that drove the score, largest first")


class ClaimsReceipt(BaseModel):
    """A file for several homes: one claim stored per home."""

    month: str
    claims: list[ClaimReceipt]
