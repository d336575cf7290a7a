"""Production's notification settings: SMS must reach a provider (never the development file), and the
platform as docker-compose.yml configures it sends SMS through the provider and e-mail only with a server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import ValidationError
from tests.test_compose import SECRETS, _config

from eldercare.platform.config import Environment
from eldercare.platform.notify.channels import EmailChannel, HttpSmsProvider, SmsChannel
from eldercare.platform.notify.settings import NotifySettings, build_channels

DATA_KEY = SECRETS["ELDERCARE_DATA_KEY"]


def _platform_env(extra: dict[str, str]) -> dict[str, str]:
    result = _config({**SECRETS, **extra})
    assert result.returncode == 0, result.stderr
    environment: dict[str, Any] | list[str] = yaml.safe_load(result.stdout)["services"]["platform"]["environment"]
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def _settings(env: dict[str, str]) -> NotifySettings:
    """NotifySettings as the platform's process reads them from ``env`` (and nothing else)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update({**env, "ELDERCARE_ENV_FILE": "/nonexistent/eldercare.env"})
    try:
        return NotifySettings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _channels(settings: NotifySettings) -> dict[str, object]:
    async def build() -> dict[str, object]:
        async with httpx.AsyncClient() as client:
            return dict(build_channels(settings, client))

    return asyncio.run(build())


def test_production_refuses_sms_to_a_file() -> None:
    with pytest.raises(ValidationError, match="ELDERCARE_SMS_URL is not set"):
        NotifySettings(environment=Environment.PRODUCTION, sms_url=None)
    with pytest.raises(ValidationError, match="ELDERCARE_SMS_URL is not set"):
        NotifySettings(environment=Environment.PRODUCTION, sms_url="")
    development = _channels(NotifySettings(environment=Environment.DEVELOPMENT, sms_url=None))
    assert isinstance(development["sms"], SmsChannel) and not isinstance(development["sms"].provider, HttpSmsProvider)


def test_the_platform_does_not_start_in_production_without_an_sms_provider(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELDERCARE_")}
    env.update(
        ELDERCARE_ENVIRONMENT="production",
        ELDERCARE_ENV_FILE=str(tmp_path / "none.env"),
        ELDERCARE_STATE_DIR=str(tmp_path),
        ELDERCARE_DATABASE_URL="postgresql://eldercare@127.0.0.1:1/eldercare",
        ELDERCARE_DATA_KEY=DATA_KEY,
    )
    exe = Path(sys.executable).with_name("eldercare")
    result = subprocess.run(
        [str(exe), "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert "ELDERCARE_SMS_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sms.jsonl").exists()


def test_compose_sends_sms_through_the_provider_and_email_only_with_a_server() -> None:
    missing = _config({k: v for k, v in SECRETS.items() if k != "ELDERCARE_SMS_URL"}, "-q")
    assert missing.returncode != 0 and "ELDERCARE_SMS_URL" in missing.stderr

    plain = _settings(_platform_env({}))
    assert plain.environment is Environment.PRODUCTION
    channels = _channels(plain)
    sms = channels["sms"]
    assert isinstance(sms, SmsChannel) and isinstance(sms.provider, HttpSmsProvider)
    assert sms.provider.url == SECRETS["ELDERCARE_SMS_URL"]
    assert "email" not in channels

    mailed = _channels(
        _settings(_platform_env({"ELDERCARE_SMTP_HOST": "mail.example.cn", "ELDERCARE_SMS_API_KEY": "k" * 24}))
    )
    email = mailed["email"]
    assert isinstance(email, EmailChannel) and email.host == "mail.example.cn" and email.port == 25
    sms = mailed["sms"]
    assert isinstance(sms, SmsChannel) and isinstance(sms.provider, HttpSmsProvider)
    assert sms.provider.api_key == "k" * 24


def test_sms_can_be_switched_off_explicitly_and_only_so() -> None:
    """A deployment without an SMS contract says so (``ELDERCARE_SMS_URL=off``): no SMS channel, so SMS is not
    offered and existing SMS channels are shown as not sent; anything else that is not an address is refused."""
    off = NotifySettings(environment=Environment.PRODUCTION, sms_url="off")
    assert "sms" not in _channels(off) and "webhook_json" in _channels(off)
    assert "sms" not in _channels(NotifySettings(environment=Environment.DEVELOPMENT, sms_url="off"))
    with pytest.raises(ValidationError, match="neither an http"):
        NotifySettings(environment=Environment.PRODUCTION, sms_url="no")
    compose = _settings(_platform_env({"ELDERCARE_SMS_URL": "off"}))
    assert compose.environment is Environment.PRODUCTION and "sms" not in _channels(compose)
