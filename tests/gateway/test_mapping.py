"""Vendor mappings: both shipped vendor formats map back to the contract, bad payloads give reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eldercare.devices import messages as m
from eldercare.gateway import mapping_files, vendorsim
from eldercare.gateway.errors import MappingFileError

T0 = 1_763_775_000_123
REGISTRY = mapping_files.load_all()

SAMPLES: dict[str, list[m.DeviceMessage]] = {
    "acme": [
        m.BedSample(dev="BS-1", ts=T0, presence=True, hr=72.0, rr=16.0, move=0.12),
        m.BedSample(dev="BS-1", ts=T0, presence=False),
        m.Battery(dev="BS-1", ts=T0, level=7),
        m.BedExit(dev="BS-1", ts=T0, back=False),
        m.BedExit(dev="BS-1", ts=T0, back=True),
        m.Button(dev="BT-1", ts=T0, action=m.ButtonAction.PRESS),
        m.Button(dev="BT-1", ts=T0, action=m.ButtonAction.CANCEL),
        m.Fall(dev="FR-1", ts=T0, source="radar", confidence=0.87),
        m.Location(dev="WB-1", ts=T0, lat=30.7, lon=111.3, acc=8.0),
        m.Sos(dev="WB-1", ts=T0, lat=30.7, lon=111.3),
        m.AccelSamples(dev="WR-1", ts=T0, hz=50, xyz=[(12, -256, 3), (-400, 1000, 0)]),
    ],
    "lianke": [
        m.Button(dev="BT-1", ts=T0, action=m.ButtonAction.PRESS),
        m.Button(dev="BT-1", ts=T0, action=m.ButtonAction.CANCEL),
        m.BedSample(dev="BS-1", ts=T0, presence=True, hr=61.5, rr=14.0),
        m.BedSample(dev="BS-1", ts=T0, presence=False),
        m.BedExit(dev="BS-1", ts=T0, back=False),
        m.BedExit(dev="BS-1", ts=T0, back=True),
        m.Battery(dev="BT-1", ts=T0, level=88),
        m.EnvReading(dev="SM-1", ts=T0, kind="smoke", value=3.5),
        m.EnvAlarm(dev="SM-1", ts=T0, kind="smoke", active=True),
        m.AccelSamples(dev="WR-1", ts=T0, hz=100, xyz=[(12, -256, 3), (15, -250, 2)]),
    ],
}


def mapped(vendor: str, payload: bytes, topic: str | None = None) -> tuple[list[m.DeviceMessage], list[str]]:
    result = REGISTRY[vendor].map(payload, received_ms=T0 - 5000, topic=topic)
    return [x.message for x in result.messages], [p.reason for p in result.problems]


@pytest.mark.parametrize("vendor", ["acme", "lianke"])
def test_every_supported_message_survives_the_vendors_format(vendor: str) -> None:
    for message in SAMPLES[vendor]:
        payload = vendorsim.encode(vendor, message)
        messages, problems = mapped(vendor, payload)
        assert problems == []
        assert messages == [message], payload


def test_the_two_formats_really_differ() -> None:
    press = m.Button(dev="BT-1", ts=T0, action=m.ButtonAction.PRESS)
    assert json.loads(vendorsim.encode("acme", press)) == {
        "deviceId": "BT-1",
        "time": 1763775000.123,
        "type": "call",
        "state": "pressed",
    }
    assert vendorsim.encode("lianke", press) == b"id=BT-1;ts=1763775000123;ev=key;act=1"


def test_vendor_a_units_are_converted() -> None:
    payload = b'{"deviceId":"BS-9","type":"vitals","time":1763775000,"inBed":0,"motion":50,"battery":12}'
    messages, problems = mapped("acme", payload)
    assert problems == []
    assert messages == [
        m.BedSample(dev="BS-9", ts=1_763_775_000_000, presence=False, move=0.5),
        m.Battery(dev="BS-9", ts=1_763_775_000_000, level=12),
    ]


def test_a_payload_without_time_gets_the_time_it_was_received() -> None:
    messages, _ = mapped("lianke", b"id=BT-2;ev=key;act=1")
    assert messages == [m.Button(dev="BT-2", ts=T0 - 5000, action=m.ButtonAction.PRESS)]


@pytest.mark.parametrize(
    ("vendor", "payload", "reason"),
    [
        ("acme", b"{not json", "payload is not JSON"),
        ("acme", b'{"type":"vitals","inBed":1}', "no device code at 'deviceId'"),
        ("acme", b'{"deviceId":"BS-1","type":"dance","time":1}', "no rule matches the record"),
        ("acme", b'{"deviceId":"BT-1","type":"call","time":1763775000,"state":"held"}', "'held' is not in its table"),
        ("acme", b'{"deviceId":"BS-1","type":"vitals","time":1763775000,"inBed":1,"heartRate":900}', "hr"),
        ("acme", b'{"deviceId":"BS-1","type":"vitals","time":"noon","inBed":1}', "time 'noon' is not a finite number"),
        ("lianke", b"id=BT-1;ts=1763775000123;ev=key;act=7", "'7' is not in its table"),
        ("lianke", b"id=BT-1;ts=1763775000123;garbage", "'garbage' is not key=value"),
        ("lianke", b"\xff\xfe", "not UTF-8"),
        ("contract", b'{"t":"button","dev":"BT-1","ts":1763775000123,"action":"explode"}', "action"),
    ],
)
def test_unmappable_payloads_say_why(vendor: str, payload: bytes, reason: str) -> None:
    messages, problems = mapped(vendor, payload)
    assert messages == []
    assert len(problems) == 1
    assert reason in problems[0]


DEEP = b"[" * 100_000 + b"]" * 100_000
ACME_BUTTON = b'{"deviceId":"BT-1","type":"call","state":"pressed","time":%s}'
ACME_WRIST = b'{"deviceId":"WR-1","type":"accel","time":1763775000,"rate":50,"mg":%s}'
ACME_VITALS = b'{"deviceId":"BS-1","type":"vitals","time":1763775000,"inBed":1,"battery":%s}'
PRESS = [("Button", T0 - 5000)]  # kept, with the time the gateway received it


@pytest.mark.parametrize(
    ("vendor", "payload", "reason", "kept"),
    [  # numbers JSON and text can spell but no clock or sensor can mean, and nesting no parser can follow
        ("acme", ACME_BUTTON % b"Infinity", "time inf is not a finite number", PRESS),
        ("acme", ACME_BUTTON % b"NaN", "time nan is not a finite number", PRESS),
        ("acme", ACME_BUTTON % b"1e400", "time inf is not a finite number", PRESS),
        ("acme", ACME_BUTTON % b'"1e999"', "time '1e999' is not a finite number", PRESS),
        ("acme", ACME_BUTTON % b"1e300", "time 1e+300 is out of range", PRESS),
        ("acme", ACME_BUTTON % b"-5", "time -5 is out of range", PRESS),
        ("acme", ACME_VITALS % b"1e400", "finite", [("BedSample", 1_763_775_000_000)]),
        ("acme", ACME_WRIST % b"[[1e400,0,0]]", "finite", []),
        ("acme", ACME_WRIST % b'["123"]', "'123' is not [x, y, z]", []),
        ("acme", ACME_WRIST % b"[[1,2]]", "[1, 2] is not [x, y, z]", []),
        ("acme", ACME_WRIST % b"[[true,false,true]]", "is not [x, y, z]", []),
        ("acme", b'{"deviceId":"BT-1","x":' + DEEP + b"}", "nested too deeply", []),
        ("lianke", b"id=BT-1;ts=inf;ev=key;act=1", "time 'inf' is not a finite number", PRESS),
        ("lianke", b"id=BT-1;ts=nan;ev=key;act=1", "time 'nan' is not a finite number", PRESS),
        ("lianke", b"id=WR-1;ts=1763775000123;ev=acc;hz=inf;d=1,2,3", "finite", []),
        ("lianke", b"id=WR-1;ts=1763775000123;ev=acc;hz=50;d=1,2,nan", "finite", []),
        ("contract", DEEP, "nested too deeply", []),
    ],
)
def test_hostile_payloads_are_problems_not_exceptions(
    vendor: str, payload: bytes, reason: str, kept: list[tuple[str, int]]
) -> None:
    """An exception out of a mapping would reach the MQTT source's callback: the message would never be
    acknowledged, and a sensor sending such values would soon fill the broker's window for the whole source. What
    is kept: a press whose time cannot be read, with the time of receipt; a reading whose battery level cannot be
    (the battery is another message of the same record)."""
    messages, problems = mapped(vendor, payload)
    assert [(type(x).__name__, x.ts) for x in messages] == kept
    assert len(problems) == 1 and reason in problems[0], problems


def test_a_bad_record_does_not_spoil_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "batchy.toml").write_text(
        'vendor = "batchy"\nformat = "json"\nrecords = "data.readings"\ndevice = "id"\ntime = "t"\n'
        '[[rule]]\nemit = "battery"\n[rule.fields]\nlevel = { from = "v.bat", as = "int" }\n'
    )
    registry = mapping_files.load_all([tmp_path])
    payload = json.dumps(
        {"data": {"readings": [{"id": "A", "t": T0, "v": {"bat": 50}}, {"id": "B", "t": T0, "v": {"bat": 500}}]}}
    ).encode()
    result = registry["batchy"].map(payload, received_ms=T0)
    assert [x.message for x in result.messages] == [m.Battery(dev="A", ts=T0, level=50)]
    assert [(p.device, "level" in p.reason) for p in result.problems] == [("B", True)]
    assert {"acme", "lianke", "contract", "batchy"} <= registry.keys()


def test_the_device_code_may_come_from_the_topic(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text(
        'vendor = "topical"\nformat = "kv"\ndevice_topic_level = 1\n'
        '[[rule]]\nemit = "button"\n[rule.fields]\naction = { value = "press" }\n'
    )
    mapping = mapping_files.load_all([tmp_path])["topical"]
    result = mapping.map(b"k=1", received_ms=T0, topic="site/BT-77/evt")
    assert [x.message for x in result.messages] == [m.Button(dev="BT-77", ts=T0, action=m.ButtonAction.PRESS)]


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            'vendor = "x"\nformat = "json"\ndevice = "id"\n[[rule]]\nemit = "bed"\nfeilds = {}\n',
            "rule[0].feilds",
            "Extra",
        ),
        (
            'vendor = "x"\nformat = "json"\ndevice = "id"\n[[rule]]\nemit = "dance"\n',
            "rule[0]",
            "not a contract message type",
        ),
        ('vendor = "x"\nformat = "xml"\n', "format", "Input should be"),
        ('vendor = "x"\nformat = "json"\n[[rule]]\nemit = "bed"\n', "(top level)", "device"),
        (
            'vendor = "x"\nformat = "json"\ndevice = "id"\n[[rule]]\nemit = "battery"\n'
            '[rule.fields]\nlevel = { from = "a", value = 3 }\n',
            "rule[0].fields.level",
            "exactly one",
        ),
        ('vendor = "x"\nformat = "json"\ndevice = "id"\n[[rule]\n', "(syntax)", ""),
    ],
)
def test_a_bad_mapping_file_names_its_key(tmp_path: Path, text: str, key: str, reason: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(MappingFileError) as caught:
        mapping_files.load_all([tmp_path])
    assert caught.value.key == key
    assert reason in caught.value.reason


@settings(max_examples=200, deadline=None)
@given(
    presence=st.booleans(),
    hr=st.none() | st.floats(min_value=0, max_value=300, allow_nan=False),
    rr=st.none() | st.floats(min_value=0, max_value=100, allow_nan=False),
    ts=st.integers(min_value=946_684_800_000, max_value=4_102_444_800_000),
)
def test_bed_samples_round_trip_through_both_vendors(
    presence: bool, hr: float | None, rr: float | None, ts: int
) -> None:
    sample = m.BedSample(dev="BS-h", ts=ts, presence=presence, hr=hr, rr=rr)
    for vendor in ("acme", "lianke"):
        messages, problems = mapped(vendor, vendorsim.encode(vendor, sample))
        assert problems == []
        assert messages == [sample]


T_S = 1_763_775_000  # seconds


@pytest.mark.parametrize(
    ("vendor", "payload", "alarm", "problem"),
    [  # an alarm and something beside the point that cannot be read: the alarm is kept, the rest is a problem
        ("acme", f'{{"deviceId":"BT-1","type":"call","time":{T_S},"state":"pressed","battery":101}}', "Button", "lev"),
        ("acme", f'{{"deviceId":"BT-1","type":"call","time":{T_S},"state":"pressed","battery":"low"}}', "Button", "lo"),
        ("lianke", f"id=BT-2;ts={T_S}000;ev=key;act=1;bat=", "Button", "battery"),
        ("lianke", f"id=BT-2;ts={T_S}000;ev=key;act=1;bat=255", "Button", "level"),
        ("acme", f'{{"deviceId":"WB-1","type":"sos","time":{T_S},"lat":0,"lng":999}}', "Sos", "left out"),
        ("acme", f'{{"deviceId":"WB-1","type":"sos","time":{T_S},"lat":"","lng":""}}', "Sos", "sos."),
        ("acme", f'{{"deviceId":"FR-1","type":"fall","time":{T_S},"confidence":101}}', "Fall", "left out"),
        ("lianke", "id=BT-3;ts=86400000;ev=key;act=1", "Button", "time of receipt"),
        ("lianke", "id=SM-1;ts=5000;ev=smoke_alarm;on=1", "EnvAlarm", "time of receipt"),
    ],
)
def test_an_alarm_is_not_lost_for_another_field_of_its_record(
    vendor: str, payload: str, alarm: str, problem: str
) -> None:
    """A press reported with a battery level out of range, an SOS without a GPS fix, a fall with a confidence of
    101 %, a button whose clock was reset to 1970: before, the whole record was refused, the alarm with it (and
    acknowledged, so no device sent it again)."""
    messages, problems = mapped(vendor, payload.encode())
    alarms = [x for x in messages if m.is_alarm_class(x)]
    assert [type(x).__name__ for x in alarms] == [alarm], (messages, problems)
    assert problems and any(problem in p for p in problems), problems
    if "1970" in payload or "ts=86400000" in payload or "ts=5000" in payload:
        assert alarms[0].ts == T0 - 5000  # the time of receipt
