"""devices/asyncapi.yaml: what the generator produces now, structurally valid AsyncAPI 3.0.0."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from eldercare.devices import asyncapi, messages, topics

DOC_URI = "urn:test:asyncapi-document"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi.build()


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for token in ref[2:].split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert key in node, f"{ref}: no {key!r}"
        node = node[key]
    return node


def _refs(node: Any, path: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value
            else:
                yield from _refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _refs(value, f"{path}/{index}")


def test_checked_in_document_is_what_the_generator_produces() -> None:
    checked_in = asyncapi.DOCUMENT_PATH.read_text(encoding="utf-8")
    assert checked_in == asyncapi.render(), (
        "devices/asyncapi.yaml is stale: run `python -m eldercare.devices.asyncapi > devices/asyncapi.yaml`"
    )


def test_yaml_holds_the_same_data(doc: dict[str, Any]) -> None:
    assert yaml.safe_load(asyncapi.DOCUMENT_PATH.read_text(encoding="utf-8")) == doc


def test_check_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert asyncapi.main(["--check"]) == 0
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text(asyncapi.render().replace("Alarm lane", "Alarm lane (old)"), encoding="utf-8")
    monkeypatch.setattr(asyncapi, "DOCUMENT_PATH", stale)
    assert asyncapi.main(["--check"]) == 1


def test_top_level_shape(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc) <= {
        "asyncapi",
        "id",
        "info",
        "servers",
        "defaultContentType",
        "channels",
        "operations",
        "components",
    }
    assert {"title", "version"} <= set(doc["info"])
    assert doc["info"]["version"].startswith(f"{messages.CONTRACT_VERSION}.")
    assert doc["defaultContentType"] == "application/json"
    for server in doc["servers"].values():
        assert server["protocol"] == "secure-mqtt"
        assert set(re.findall(r"{(\w+)}", server["host"])) == set(server.get("variables", {}))


def _mapping_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        discriminator = node.get("discriminator")
        if isinstance(discriminator, dict):
            yield from discriminator["mapping"].values()
        for value in node.values():
            yield from _mapping_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _mapping_refs(value)


def test_every_ref_resolves(doc: dict[str, Any]) -> None:
    refs = list(_refs(doc))
    assert len(refs) > 40
    for where, ref in refs:
        assert ref.startswith("#/"), f"{where}: external reference {ref}"
        _resolve(doc, ref)
    # discriminator mappings are references too
    mapping_refs = list(_mapping_refs(doc))
    assert len(mapping_refs) == 11 + 3
    for ref in mapping_refs:
        assert _resolve(doc, ref)["type"] == "object", ref


def test_a_broken_ref_is_noticed(doc: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        _resolve(doc, "#/components/schemas/Nope/schema")


def test_schemas_are_exactly_the_contracts(doc: dict[str, Any]) -> None:
    components = doc["components"]["schemas"]
    assert asyncapi.from_components(components) == messages.json_schemas()
    for name, wrapper in components.items():
        assert set(wrapper) == {"schemaFormat", "schema"}, name
        assert wrapper["schemaFormat"] == asyncapi.SCHEMA_FORMAT
        jsonschema.Draft202012Validator.check_schema(wrapper["schema"])


def test_channels_follow_the_topic_grammar(doc: dict[str, Any]) -> None:
    expected = {
        "alarm": topics.Channel.ALARM,
        "telemetry": topics.Channel.TELEMETRY,
        "status": topics.Channel.STATUS,
        "command": topics.Channel.COMMAND,
    }
    assert set(doc["channels"]) == set(expected)
    parameters = doc["components"]["parameters"]
    for name, channel in doc["channels"].items():
        address = channel["address"]
        placeholders = re.findall(r"{(\w+)}", address)
        assert placeholders == list(channel["parameters"]), name
        values = {p: _resolve(doc, channel["parameters"][p]["$ref"])["examples"][0] for p in placeholders}
        topic = topics.parse_topic(address.format(**values))
        assert topic.channel is expected[name]
        assert (topic.institution, topic.gateway) == (values["institution"], values["gateway"])
        assert topic.command == values.get("command")
    assert set(parameters) == {"institution", "gateway", "command"}


def test_operations(doc: dict[str, Any]) -> None:
    operations = doc["operations"]
    sends = {name for name, op in operations.items() if op["action"] == "send"}
    receives = {name for name, op in operations.items() if op["action"] == "receive"}
    assert sends == {"sendAlarm", "sendTelemetry", "sendBirth", "sendHeartbeat", "sendDeath"}
    assert receives == {"receiveCommand"}
    for name, op in operations.items():
        channel_ref = op["channel"]["$ref"]
        channel = _resolve(doc, channel_ref)
        for message in op.get("messages", []):
            # AsyncAPI 3: an operation's messages are references into its own channel's messages
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), name
            assert message["$ref"].rsplit("/", 1)[1] in channel["messages"]
        assert op["bindings"]["mqtt"]["qos"] == 1
    retained = {name for name, op in operations.items() if op["bindings"]["mqtt"].get("retain")}
    assert retained == {"sendBirth", "sendDeath"}


def _payload_validator(doc: dict[str, Any], message: dict[str, Any]) -> jsonschema.Draft202012Validator:
    wrapper = _resolve(doc, message["payload"]["$ref"])
    assert wrapper["schemaFormat"] == asyncapi.SCHEMA_FORMAT
    pointer = message["payload"]["$ref"] + "/schema"
    registry: Registry[Any] = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(doc))
    return jsonschema.Draft202012Validator({"$ref": f"{DOC_URI}{pointer}"}, registry=registry)


def test_examples_validate_through_the_documents_own_refs(doc: dict[str, Any]) -> None:
    seen: list[str] = []
    for name, message in doc["components"]["messages"].items():
        validator = _payload_validator(doc, message)
        assert message["examples"], name
        for example in message["examples"]:
            validator.validate(example["payload"])
            raw = json.dumps(example["payload"]).encode()
            if name.endswith("Frame"):
                frame = messages.decode_frame(raw)
                lane = "alarm" if messages.is_alarm_class(frame.msgs[0]) else "telemetry"
                assert name == f"{lane}Frame"
            else:
                assert type(messages.decode_status(raw)).__name__.lower() == name
            seen.append(example["name"])
    assert sorted(seen) == sorted(path.stem for path in asyncapi.EXAMPLES_DIR.glob("*.json"))


def test_the_documents_schemas_reject_a_bad_payload(doc: dict[str, Any]) -> None:
    validator = _payload_validator(doc, doc["components"]["messages"]["alarmFrame"])
    example = doc["components"]["messages"]["alarmFrame"]["examples"][0]["payload"]
    bad = {**example, "msgs": [{**example["msgs"][0], "ts": "yesterday"}]}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)


def test_a_frame_mixing_lanes_is_refused_as_an_example(tmp_path: Path) -> None:
    for name in ("button_press", "battery"):
        (tmp_path / f"{name}.json").write_bytes((asyncapi.EXAMPLES_DIR / f"{name}.json").read_bytes())
    examples = asyncapi.load_examples(tmp_path)
    asyncapi.build(examples)  # fine
    mixed = dict(examples["button_press"])
    mixed["msgs"] = [*examples["button_press"]["msgs"], *examples["battery"]["msgs"]]  # type: ignore[misc]
    with pytest.raises(ValueError, match="one lane"):
        asyncapi.build({"mixed": mixed})
