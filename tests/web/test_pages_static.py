"""The pages as files and as served: every text the pages use exists in Chinese and in English with the same
placeholders, nothing refers to a resource outside the platform, and each page is served with a
Content-Security-Policy that lets the browser load only the platform's own files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from tests.web.support import World

WEB = Path(__file__).resolve().parents[2] / "platform" / "web"
PAGES = ["login", "board", "handover", "resident", "family", "regulator", "institution"]
SCRIPTS = [
    p for p in (WEB / "static").glob("*.js") if p.name.split(".")[0] in ("common", "board", "family", "regulator")
]


def _texts(lang: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((WEB / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))
    return loaded


def test_both_languages_have_every_text_with_the_same_placeholders() -> None:
    zh, en = _texts("zh-CN"), _texts("en")
    assert set(zh) == set(en), set(zh) ^ set(en)
    for key in zh:
        assert zh[key].strip() and en[key].strip(), key
        assert set(re.findall(r"\{\w+\}", zh[key])) == set(re.findall(r"\{\w+\}", en[key])), key


def test_every_text_the_pages_use_exists() -> None:
    zh = _texts("zh-CN")
    used: set[str] = set()
    for page in PAGES:
        html = (WEB / "pages" / f"{page}.html").read_text(encoding="utf-8")
        used |= set(re.findall(r'data-i18n(?:-aria|-placeholder|-title)?="([^"]+)"', html))
    for script in SCRIPTS:
        used |= set(re.findall(r'\bt\("([A-Za-z0-9_.]+)"\s*[,)]', script.read_text(encoding="utf-8")))
    assert used, "no texts found: the patterns no longer match the code"
    assert not sorted(k for k in used if k not in zh)


def test_nothing_is_loaded_from_outside_the_platform() -> None:
    for page in PAGES:
        html = (WEB / "pages" / f"{page}.html").read_text(encoding="utf-8")
        for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
            assert ref.startswith(("/static/", "/", "#")) and not ref.startswith("//"), f"{page}: {ref}"
    for script in SCRIPTS:
        text = script.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), script.name
        assert "innerHTML" not in text, f"{script.name}: texts from data are set with textContent"


def test_pages_are_served_with_a_policy_that_keeps_them_local(web: World) -> None:
    paths = ["/", "/login", "/board", "/handover", "/resident/5", "/family", "/regulator"]
    paths += ["/regulator/institutions/3", "/i18n/en.json", "/i18n/xx.json", "/resident/0"]
    replies = {p: httpx.get(web.base + p, follow_redirects=False) for p in paths}
    assert replies["/"].status_code == 303 and replies["/"].headers["location"] == "/login"
    for path in ("/login", "/board", "/handover", "/resident/5", "/family", "/regulator", "/regulator/institutions/3"):
        reply = replies[path]
        assert reply.status_code == 200, path
        policy = reply.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
        assert '<script src="/static/app/common.js">' in reply.text
    assert replies["/i18n/en.json"].json()["other_lang"] == "中文"
    assert replies["/i18n/xx.json"].status_code == 422
    assert replies["/resident/0"].status_code == 422
