"""What a scenario file may say (schema 1), checked strictly: an unknown key is an error, with its line.

See ``docs/simulators.md`` for the annotated format and ``simulators/scenarios/`` for the shipped files.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from eldercare.simulators.errors import SimError
from eldercare.simulators.run.clock import parse_duration
from eldercare.simulators.scenario.marks import Marked


def _check_duration(value: str) -> str:
    if value != "month":
        try:
            parse_duration(value)
        except SimError as exc:
            raise ValueError(str(exc)) from None
    return value


Duration = Annotated[
    str, Field(min_length=2, max_length=20, description="45s, 90m, 1h30m, 15d"), AfterValidator(_check_duration)
]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WorldSpec(_Strict):
    region: str = "4205"
    institutions: int = Field(2, ge=1, le=50)
    households: int = Field(2, ge=0, le=200)
    seed: int
    beds: str = Field("8-10", pattern=r"^\d+(-\d+)?$")


class RunSpec(_Strict):
    start: str = "now"
    duration: Annotated[Duration, Field(description="or month: to the end of the start's month")]
    speed: float | Literal["max"] = 1.0
    via: Literal["gateway", "direct"] = "gateway"
    incidents: Literal["quiet", "normal", "busy", "demo"] = "quiet"
    bed_sample_s: float = Field(30.0, ge=1, le=3600)

    @model_validator(mode="after")
    def _check(self) -> RunSpec:
        if isinstance(self.speed, float) and not 0.01 <= self.speed <= 100_000:
            raise ValueError("speed: between 0.01 and 100000, or max")
        return self


class _Inject(_Strict):
    """Who or where (``home`` or ``household``, then ``room``, ``bed`` or ``person``) and when."""

    id: Slug | None = None
    at: str = Field("+0s", description="+DURATION, HH:MM, day N HH:MM or an ISO instant")
    home: int | None = Field(None, ge=1, description="an institution of the world, 1 = the first")
    household: int | None = Field(None, ge=1, description="a home-care household of the world, 1 = the first")
    room: str | None = Field(None, description="a room of the home, as in its plan: building-room, e.g. 1-101")
    bed: str | None = Field(None, description="a bed label of the home, e.g. 101-1")
    person: int | None = Field(None, ge=1, description="the n-th resident of the home or household, plan order")

    @model_validator(mode="after")
    def _where(self) -> _Inject:
        if (self.home is None) == (self.household is None):
            raise ValueError("give exactly one of home and household")
        return self


class Fall(_Inject):
    kind: Literal["fall"]
    source: Literal["radar", "wearable"] = "radar"
    trial: str | None = Field(None, description="the SisFall fall trial a wearable replays, e.g. F01_SA01_R01")
    lie: Duration = "10m"


class Press(_Inject):
    kind: Literal["press"]
    accidental: bool = False
    cancel_after: Duration | None = Field(None, description="default: 10s if accidental, else 3m")


class Wander(_Inject):
    kind: Literal["wander"]
    duration: Duration = "40m"
    distance_m: float = Field(800.0, ge=50, le=20_000)


class Smoke(_Inject):
    kind: Literal["smoke"]
    duration: Duration = "8m"
    peak_pct: float = Field(18.0, gt=5, le=100)


class Silence(_Inject):
    kind: Literal["silence"]
    device: Literal["bed_sensor", "button", "fall_radar", "wearable", "wristband", "smoke"] = "bed_sensor"
    duration: Duration


class Outage(_Inject):
    kind: Literal["outage"]
    duration: Duration = "10m"


class Hospital(_Inject):
    kind: Literal["hospital"]
    duration: Duration
    hospital: str = Field("宜昌市中心人民医院", min_length=1, max_length=100)


class Death(_Inject):
    kind: Literal["death"]
    place: str = Field("家中", min_length=1, max_length=100)
    source: Literal["funeral_data", "institution", "hospital", "family"] = "funeral_data"
    recorded_after: Duration | None = Field("0s", description="when the registry learns of it; null: never")
    claims_continue: bool = Field(False, description="allowance and home-care bed still claimed for the month")


class Ghost(_Inject):
    kind: Literal["ghost"]
    admitted_before: Duration = "90d"


class Twin(_Inject):
    kind: Literal["twin"]
    in_home: int = Field(ge=1, description="the second institution that registers the same person")
    admitted_before: Duration = "60d"


Inject = Annotated[
    Fall | Press | Wander | Smoke | Silence | Outage | Hospital | Death | Ghost | Twin, Field(discriminator="kind")
]


class Expect(_Strict):
    """An alarm the platform must raise for each matching injection."""

    alarm: str = Field(min_length=1, max_length=64, description="the alarm's kind: fall, button, gateway_offline, ...")
    priority: Literal["emergency", "urgent", "routine", "technical"] | None = None
    for_: str = Field(alias="for", min_length=1, description="an injection's id, or a kind of injection")
    within_s: float | None = Field(None, gt=0, description="real seconds from the injection's messages to the alarm")
    within_sim: Duration | None = Field(None, description="simulated time from the injection to the alarm's event")
    state: Literal["raised", "acknowledged", "attending", "resolved", "cancelled"] | None = None

    @model_validator(mode="after")
    def _measure(self) -> Expect:
        if self.within_s is None and self.within_sim is None:
            raise ValueError("give within_s, within_sim or both")
        return self


Programme = Literal["operating_subsidy", "old_age_allowance", "home_care_bed"]


class PadEmptyBeds(_Strict):
    home: int = Field(ge=1)
    beds: int = Field(ge=1, le=100)


class ClaimsSpec(_Strict):
    programmes: list[Programme] = ["operating_subsidy", "old_age_allowance", "home_care_bed"]
    pad_empty_beds: list[PadEmptyBeds] = []


class Finding(_Strict):
    finding: Literal[
        "claimed_after_death",
        "empty_bed_claimed",
        "never_present",
        "claimed_by_two_homes",
        "absent_in_hospital",
        "unverifiable_days",
    ]
    programme: Programme
    for_: str | None = Field(None, alias="for", description="an injection's id or kind; empty beds: none")
    home: int | None = Field(None, ge=1, description="empty_bed_claimed: the padding home")


class Scenario(_Strict):
    scenario: Slug
    version: int = Field(ge=1, description="the scenario's own revision; bump it when its meaning changes")
    schema_: Literal[1] = Field(1, alias="schema")
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    world: WorldSpec
    run: RunSpec
    inject: list[Inject] = Field(min_length=1)
    expect: list[Expect] = []
    claims: ClaimsSpec | None = None
    expect_claim_findings: list[Finding] = []


def validate(marked: Marked) -> Scenario:
    """The scenario in ``marked``, or a ScenarioError at the line of the first problem."""
    try:
        scenario = Scenario.model_validate(marked.data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = _path(first)
        raise marked.error(path, _reason(first)) from None
    _references(scenario, marked)
    return scenario


def _references(scenario: Scenario, marked: Marked) -> None:
    seen: dict[str, int] = {}
    for n, item in enumerate(scenario.inject):
        if item.id is not None:
            if item.id in seen:
                raise marked.error(("inject", n, "id"), f"the same id as inject[{seen[item.id]}]")
            seen[item.id] = n
    known = set(seen) | {i.kind for i in scenario.inject}
    for n, e in enumerate(scenario.expect):
        if e.for_ not in known:
            raise marked.error(("expect", n, "for"), f"{e.for_!r} is neither an injection's id nor a kind injected")
    for n, f in enumerate(scenario.expect_claim_findings):
        if f.for_ is not None and f.for_ not in known:
            raise marked.error(("expect_claim_findings", n, "for"), f"{f.for_!r} names no injection")
        if f.finding == "empty_bed_claimed" and f.home is None:
            raise marked.error(("expect_claim_findings", n), "empty_bed_claimed needs the home that pads its claims")
    if scenario.expect_claim_findings and scenario.claims is None:
        raise marked.error(("expect_claim_findings",), "needs a claims section (the claims to check)")


def _path(error: ErrorDetails) -> tuple[str | int, ...]:
    # Discriminated unions add the tag to the path ("inject", 0, "fall", "lie"): drop it to find the line.
    types = {"float", "int", "str", "bool", "literal['max']", "function-after[_check_duration(), str]"}
    loc = [p for p in error.get("loc", ()) if not (isinstance(p, str) and (p[:1].isupper() or p in types))]
    kinds = {"fall", "press", "wander", "smoke", "silence", "outage", "hospital", "death", "ghost", "twin"}
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if i > 0 and isinstance(loc[i - 1], int) and part in kinds and (i == 2 and loc[0] == "inject"):
            continue
        out.append("for" if part == "for_" else "schema" if part == "schema_" else part)
    if error.get("type") == "union_tag_invalid":
        out.append("kind")
    return tuple(out)


def _reason(error: ErrorDetails) -> str:
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        return "unknown key (a misspelling?)"
    if "speed" in error.get("loc", ()) and error.get("type") in ("float_parsing", "literal_error"):
        return "a number of simulated seconds per real second, or max"
    if error.get("type") == "union_tag_invalid":
        return f"kind {error.get('ctx', {}).get('tag')!r} is not one of {error.get('ctx', {}).get('expected_tags')}"
    return message.removeprefix("Value error, ")
