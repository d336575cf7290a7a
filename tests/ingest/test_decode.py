"""The fast path of decode is held to the contract: the same fields and limits as ``messages.BedSample``, the
same verdicts on good and bad frames, and the precise reason from the careful path when it says no."""

from __future__ import annotations

import msgspec
import msgspec.inspect as mi
from hypothesis import given, settings
from hypothesis import strategies as st

from eldercare.devices import messages as m
from eldercare.ingest.decode import DecodedFrame, FastBed, Received, Undecodable, _shallow_envelope, decode

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


DEEP = b"[" * 5000 + b"]" * 5000
PRESS = b'{"t":"button","dev":"BT-1","ts":%d,"action":"press"}' % T0


def test_nesting_too_deep_for_the_parser_is_a_bad_frame_or_message_never_an_exception() -> None:
    """msgspec raises RecursionError, not a DecodeError, past Python's recursion limit: raised out of decode, it
    ended the alarm lane's writer thread, and no alarm was stored after it (a 2 KB frame was enough). Now the
    frame is cut without recursion: only what is too deep is bad, and the press beside it is an alarm."""
    alarm = TOPIC.replace("telemetry", "alarm")
    for topic in (alarm, TOPIC):  # the fast path first on telemetry
        deep_message = decode(Received(topic, _payload([PRESS, b'{"t":"button","x":%s}' % DEEP, PRESS])))
        assert isinstance(deep_message, DecodedFrame), topic
        assert (deep_message.epoch, deep_message.seq, deep_message.n_msgs) == (3, 4, 3)
        assert [msg.dev for msg in deep_message.messages] == ["BT-1", "BT-1"] and deep_message.indexes == [0, 2]
        assert [(b.index, b.cause, b.reason) for b in deep_message.bad] == [
            (1, "bad_message", "msgs[1]: JSON nested too deeply")
        ]
        assert deep_message.bad[0].raw == b'{"t":"button","x":%s}' % DEEP  # kept for the operator
    extra = b'{"x":%s,"v":1,"epoch":3,"seq":4,"sent":%d,"msgs":[%s]}' % (DEEP, T0, PRESS)  # ignored, as unknown
    decoded = decode(Received(alarm, extra))
    assert isinstance(decoded, DecodedFrame) and [msg.dev for msg in decoded.messages] == ["BT-1"], decoded
    for payload, reason in [
        (
            b'{"v":1,"epoch":%s,"seq":4,"sent":%d,"msgs":[%s]}' % (DEEP, T0, PRESS),
            "frame: Expected `int`, got `array` - at `$.epoch`",
        ),
        (b'{"v":1,"epoch":3,"seq":4,"sent":%d,"msgs":[%s' % (T0, DEEP[:5000]), "frame: JSON nested too deeply"),
    ]:
        whole = decode(Received(alarm, payload))
        assert isinstance(whole, Undecodable)
        assert (whole.bad.cause, whole.bad.reason, whole.bad.raw) == ("bad_frame", reason, payload)
    arrays = decode(Received(alarm, b'{"v":1,"epoch":3,"seq":4,"sent":%d,"msgs":%s}' % (T0, DEEP)))
    assert isinstance(arrays, DecodedFrame) and not arrays.messages
    assert [(b.index, b.reason) for b in arrays.bad] == [(0, "msgs[0]: Expected `object`, got `array`")]
    status = decode(Received(TOPIC.replace("up/telemetry", "status"), b'{"x":%s}' % DEEP))
    assert isinstance(status, Undecodable) and status.bad.reason == "status: JSON nested too deeply"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(msgs=st.lists(JSON, min_size=1, max_size=5), extra=st.dictionaries(st.text(max_size=5), JSON, max_size=3))
def test_the_scan_without_recursion_cuts_a_frame_where_the_parser_does(
    msgs: list[object], extra: dict[str, object]
) -> None:
    frame = {**extra, "v": 1, "epoch": 3, "seq": 4, "sent": T0, "msgs": msgs}
    payload = msgspec.json.encode(frame).replace(b",", b" , ").replace(b":", b" : ")  # spaces between tokens
    shallow = _shallow_envelope(payload)
    assert shallow is not None
    envelope, items = shallow
    assert (envelope.epoch, envelope.seq, envelope.sent) == (3, 4, T0)
    assert [msgspec.json.decode(item) for item in items] == msgspec.json.decode(payload)["msgs"]
