"""The fast path of decode is held to the contract: the same fields and limits as ``messages.BedSample``, the
same verdicts on good and bad frames, and the precise reason from the careful path when it says no."""

from __future__ import annotations

import msgspec
import msgspec.inspect as mi
from hypothesis import given, settings
from hypothesis import strategies as st

from eldercare.devices import messages as m
from eldercare.ingest.decode import DecodedFrame, FastBed, Received, Undecodable, decode

TOPIC = "eldercare/v1/91420502MA4K8L2X3Q/GW-1/up/telemetry"
T0 = 1_763_775_000_180


def _without_pattern(info: mi.Type) -> mi.Type:
    if isinstance(info, mi.StrType):
        return msgspec.structs.replace(info, pattern=None)
    if isinstance(info, mi.UnionType):
        return mi.UnionType(tuple(_without_pattern(t) for t in info.types))
    return info


def test_fast_bed_has_the_contracts_fields_and_limits_but_the_code_pattern() -> None:
    fast, contract = mi.type_info(FastBed), mi.type_info(m.BedSample)
    assert isinstance(fast, mi.StructType) and isinstance(contract, mi.StructType)
    assert (fast.tag_field, fast.tag, fast.forbid_unknown_fields) == (
        contract.tag_field,
        contract.tag,
        contract.forbid_unknown_fields,
    )
    assert [(f.name, f.required, f.default) for f in fast.fields] == [
        (f.name, f.required, f.default) for f in contract.fields
    ]
    for mine, theirs in zip(fast.fields, contract.fields, strict=True):
        assert mine.type == _without_pattern(theirs.type), mine.name
    dev = next(f for f in contract.fields if f.name == "dev").type
    assert isinstance(dev, mi.StrType) and dev.pattern is not None  # the one it checks per distinct code


def _payload(msgs: list[bytes]) -> bytes:
    return b'{"v":1,"epoch":3,"seq":4,"sent":%d,"msgs":[%s]}' % (T0, b",".join(msgs))


def test_a_bad_device_code_goes_the_careful_way_and_gets_the_contracts_reason() -> None:
    good = b'{"t":"bed","dev":"BS-1","ts":%d,"presence":true}' % T0
    bad = b'{"t":"bed","dev":"-starts-with-a-dash","ts":%d,"presence":true}' % T0
    decoded = decode(Received(TOPIC, _payload([good, bad])))
    assert isinstance(decoded, DecodedFrame)
    assert not decoded.beds  # not the fast path
    assert [msg.dev for msg in decoded.messages] == ["BS-1"]
    assert len(decoded.bad) == 1
    assert decoded.bad[0].index == 1 and "$.dev" in decoded.bad[0].reason and decoded.bad[0].cause == "bad_message"


def test_a_frame_of_other_kinds_takes_the_contract_path() -> None:
    battery = b'{"t":"battery","dev":"BS-1","ts":%d,"level":40}' % T0
    bed = b'{"t":"bed","dev":"BS-1","ts":%d,"presence":false}' % T0
    decoded = decode(Received(TOPIC, _payload([bed, battery])))
    assert isinstance(decoded, DecodedFrame)
    assert decoded.beds == [] and len(decoded.messages) == 2 and not decoded.bad


samples = st.fixed_dictionaries(
    {
        "t": st.just("bed"),
        "dev": st.from_regex(r"\A[A-Za-z0-9-][A-Za-z0-9._:\-]{0,66}\Z"),
        "ts": st.integers(946_684_799_000, 4_102_444_801_000),
        "presence": st.booleans(),
    },
    optional={
        "hr": st.one_of(st.none(), st.floats(-1, 301, allow_nan=False)),
        "rr": st.one_of(st.none(), st.floats(-1, 101, allow_nan=False)),
        "move": st.one_of(st.none(), st.floats(-0.1, 1.1, allow_nan=False)),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(samples, min_size=1, max_size=5))
def test_the_fast_path_and_the_contract_agree_on_every_frame(msgs: list[dict[str, object]]) -> None:
    payload = _payload([msgspec.json.encode(msg) for msg in msgs])
    decoded = decode(Received(TOPIC, payload))
    try:
        contract = msgspec.json.decode(payload, type=m.Frame)
    except msgspec.ValidationError:
        contract = None
    if contract is None:
        assert isinstance(decoded, Undecodable) or (isinstance(decoded, DecodedFrame) and decoded.bad)
        return
    assert isinstance(decoded, DecodedFrame) and not decoded.bad
    got = decoded.beds or decoded.messages
    assert [msgspec.structs.asdict(g) for g in got] == [msgspec.structs.asdict(c) for c in contract.msgs]
