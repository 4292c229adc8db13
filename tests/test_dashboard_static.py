"""The dashboard page as files: no inline code (its CSP allows none), and every module preloaded
(the browser then fetches them all at once instead of one import level at a time)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

STATIC = Path(__file__).resolve().parent.parent / "ws_gateway" / "static"


def test_no_inline_script_style_or_handler() -> None:
    html = (STATIC / "dashboard.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert "<style" not in html and " style=" not in html
    assert re.findall(r"\son[a-z]+=", html) == []


def test_every_module_is_preloaded() -> None:
    html = (STATIC / "dashboard.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/([^"]+)">', html))
    modules = {p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*.js")} - {"app.js"}
    modules -= {m for m in modules if m.startswith("messages/") and m != "messages/en.js"}  # loaded for their language only
    assert sorted(modules - preloaded) == [] and sorted(preloaded - modules) == []
