"""Where the platform sends e-mail and SMS (``ELDERCARE_SMTP_*``, ``ELDERCARE_SMS_*``).

E-mail is offered only with a mail server; SMS go to a provider's HTTP API, or in development to a local
JSON-lines file. In production (``ELDERCARE_ENVIRONMENT=production``) ``ELDERCARE_SMS_URL`` must name a provider
or say ``off`` (a deployment without an SMS contract): a family's SMS channel must never end in a file on the
server. With ``off`` SMS is not offered, the API refuses new SMS channels, and existing ones are shown as not
sent, as for e-mail without a mail server.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings

from eldercare.platform.config import Environment, settings_config
from eldercare.platform.envfile import state_dir
from eldercare.platform.notify.channels import (
    Channel,
    DingTalkChannel,
    EmailChannel,
    FileSmsProvider,
    HttpSmsProvider,
    JsonWebhookChannel,
    SmsChannel,
    SmsProvider,
    WeComChannel,
)

SMS_OFF = "off"


class NotifySettings(BaseSettings):
    model_config = settings_config()

    smtp_host: str | None = Field(default=None, description="no e-mail channel when unset")
    smtp_port: int = 25
    smtp_sender: str = "eldercare@localhost"
    sms_url: str | None = Field(
        default=None, description="a provider's HTTP API; off: no SMS; unset: a local JSON-lines file (development)"
    )
    sms_api_key: SecretStr = SecretStr("")
    sms_file: Path | None = None
    webhook_timeout_s: float = 5.0
    environment: Environment = Environment.DEVELOPMENT

    @model_validator(mode="after")
    def _production_sends_sms(self) -> NotifySettings:
        if self.environment is Environment.PRODUCTION and not self.sms_url:
            raise ValueError(
                "ELDERCARE_SMS_URL is not set: in production SMS go to a provider's HTTP API, never to a local file"
                f" (set it to the provider's https:// address, or to {SMS_OFF} to send no SMS)"
            )
        if self.sms_url and self.sms_url != SMS_OFF and not self.sms_url.startswith(("https://", "http://")):
            raise ValueError(f"ELDERCARE_SMS_URL is neither an http(s):// address nor {SMS_OFF}")
        return self

    @property
    def sms_off(self) -> bool:
        return self.sms_url == SMS_OFF


def build_channels(settings: NotifySettings, client: httpx.AsyncClient) -> dict[str, Channel]:
    channels: dict[str, Channel] = {
        "webhook_wecom": WeComChannel(client),
        "webhook_dingtalk": DingTalkChannel(client),
        "webhook_json": JsonWebhookChannel(client),
    }
    if settings.smtp_host:
        channels["email"] = EmailChannel(settings.smtp_host, settings.smtp_port, settings.smtp_sender)
    if settings.sms_off:
        return channels
    provider: SmsProvider
    if settings.sms_url:
        provider = HttpSmsProvider(client, settings.sms_url, settings.sms_api_key.get_secret_value())
    else:
        provider = FileSmsProvider(settings.sms_file or state_dir() / "sms.jsonl")
    channels["sms"] = SmsChannel(provider)
    return channels
