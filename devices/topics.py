"""The MQTT topic grammar of contract v1, defined once.

Uplink (gateway -> platform), QoS 1::

    eldercare/v1/{institution}/{gateway}/up/alarm     frames of alarm-class device messages
    eldercare/v1/{institution}/{gateway}/up/telemetry frames of telemetry device messages
    eldercare/v1/{institution}/{gateway}/status       birth (retained), heartbeat, death (retained; last will)

Downlink (platform -> gateway)::

    eldercare/v1/{institution}/{gateway}/cmd/{command}

``institution`` is the home's unified social credit code (18 characters); ``gateway`` is the gateway id
issued by the platform. The broker's ACL lets a gateway's credentials publish only below its own
``eldercare/v1/{institution}/{gateway}/`` and read only its own ``cmd/`` topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ROOT = "eldercare/v1"

GATEWAY_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
INSTITUTION_PATTERN = r"[0-9A-HJ-NPQRTUWXY]{18}"
COMMAND_PATTERN = r"[a-z][a-z0-9_-]{0,31}"


class Channel(StrEnum):
    ALARM = "up/alarm"
    TELEMETRY = "up/telemetry"
    STATUS = "status"
    COMMAND = "cmd"


_TOPIC = re.compile(
    rf"{re.escape(ROOT)}/(?P<institution>{INSTITUTION_PATTERN})/(?P<gateway>{GATEWAY_ID_PATTERN})/"
    rf"(?P<channel>up/alarm|up/telemetry|status|cmd/(?P<command>{COMMAND_PATTERN}))"
)


@dataclass(frozen=True, slots=True)
class Topic:
    institution: str
    gateway: str
    channel: Channel
    command: str | None = None

    def __post_init__(self) -> None:
        if (self.channel is Channel.COMMAND) != (self.command is not None):
            raise ValueError("a command topic needs a command name, and only a command topic has one")

    def __str__(self) -> str:
        base = f"{ROOT}/{self.institution}/{self.gateway}"
        if self.channel is Channel.COMMAND:
            return f"{base}/cmd/{self.command}"
        return f"{base}/{self.channel.value}"


class TopicError(ValueError):
    """A topic that is not part of the grammar."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} does not match {ROOT}/<institution>/<gateway>/<channel>")
        self.topic = topic


def parse_topic(topic: str) -> Topic:
    match = _TOPIC.fullmatch(topic)  # not match(...) with "$", which also accepts a trailing newline
    if match is None:
        raise TopicError(topic)
    channel_text = match["channel"]
    if match["command"] is not None:
        return Topic(match["institution"], match["gateway"], Channel.COMMAND, match["command"])
    return Topic(match["institution"], match["gateway"], Channel(channel_text))


def uplink(institution: str, gateway: str, channel: Channel) -> str:
    return str(Topic(institution, gateway, channel))


def command(institution: str, gateway: str, name: str) -> str:
    return str(Topic(institution, gateway, Channel.COMMAND, name))


# Subscriptions of the platform side.
ALL_UPLINK = f"{ROOT}/+/+/up/#"
ALL_STATUS = f"{ROOT}/+/+/status"
