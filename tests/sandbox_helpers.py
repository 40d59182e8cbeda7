"""Driving the sandbox CRMs from tests: answer a consent page the way a browser would."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import requests

HIDDEN_RE = re.compile(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', re.I)
ACTION_RE = re.compile(r'<form[^>]*action="([^"]+)"', re.I)


def answer_consent(authorize_url: str, *, decision: str = "allow", scope: str | None = None) -> str:
    """Open the sandbox consent page, press Allow (or Deny), return the redirect's Location."""
    page = requests.get(authorize_url, timeout=5)
    assert page.status_code == 200 and "Allow" in page.text, page.text
    fields = {html.unescape(k): html.unescape(v) for k, v in HIDDEN_RE.findall(page.text)}
    if scope is not None:
        fields["scope"] = scope
    action = html.unescape(ACTION_RE.search(page.text)[1])  # type: ignore[index]
    parts = urlsplit(authorize_url)
    target = action if action.startswith("http") else f"{parts.scheme}://{parts.netloc}{action}"
    answer = requests.post(target, data={**fields, "decision": decision}, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]
