"""Injection through branding: script tags, style breakouts, CSS `url(javascript:…)` and `expression(…)`,
quote-breaking and newlines, in every branding field, through the editor form and through the API. Each is refused
with a 422 naming the field, or stored as text that pages escape; nothing ever reaches the stylesheet."""
from __future__ import annotations

import re

import pytest
from markupsafe import escape

from tests.admin.configuration_helpers import post_action, published, save_draft, studio_scope
from tests.admin.conftest import STUDIO, bearer, log_in

PAYLOADS = [
    "<script>alert(1)</script>",
    "</style><script>alert(1)</script>",
    "url(javascript:alert(1))",
    "expression(alert(1))",
    '" onmouseover="alert(1)',
    "' onmouseover='alert(1)",
    "x;} body { background: red }",
    "first line\nsecond line",
    "first\r\nX-Injected: yes",
]
FIELDS = ["display_name", "primary_color", "accent_color", "logo_url", "font", "welcome_text"]
# Fields whose every payload must be refused, with what a payload is glued to so it looks almost valid.
STRICT = {"primary_color": "#aabbcc", "accent_color": "#aabbcc", "font": "serif",
          "logo_url": "https://cdn.example.com/logo.png"}
STYLESHEET = re.compile(r":root \{\n  --brand: #[0-9a-f]{6};\n  --brand-ink: #[0-9a-f]{6};\n"
                        r"  --accent: #[0-9a-f]{6};\n  --accent-ink: #[0-9a-f]{6};\n  --brand-font: [^;{}<>\n]+;\n\}\n")


def _expected_accepted(field: str) -> list[str]:
    """What is stored as text (and must then be inert): anything but a newline in the one-line display name."""
    if field in STRICT:
        return []
    return [p for p in PAYLOADS if field == "welcome_text" or "\n" not in p]


def _attempts(field: str) -> list[str]:
    glued = [STRICT[field] + payload for payload in PAYLOADS] if field in STRICT else []
    return PAYLOADS + glued


def _assert_inert(app, world, field: str, payload: str) -> None:
    """The published document holds the text; every page shows it escaped; the stylesheet never carries it."""
    version, document = published(app, world.a.id)
    stored = document["branding"][field]
    assert stored.strip() and stored == payload.replace("\r\n", "\n").strip()
    css = app.test_client().get(f"{STUDIO}/theme/{version}.css").get_data(as_text=True)
    assert STYLESHEET.fullmatch(css), css
    student = app.test_client()
    log_in(student, "student@example.com")
    for client in (app.test_client(), student):
        html = client.get(f"{STUDIO}/").get_data(as_text=True)
        assert str(escape(stored)) in html
        if any(c in stored for c in "<>\"'"):
            assert stored not in html
        assert html.count("<script") == 1  # htmx's, and nothing else
        assert "onmouseover=" not in html.replace("onmouseover=&#34;", "").replace("onmouseover=&#39;", "")


@pytest.mark.parametrize("field", FIELDS)
def test_branding_payloads_through_the_editor(app, admin, world, field):
    path = f"branding.{field}"
    accepted = []
    for attempt in _attempts(field):
        response = save_draft(admin, {path: attempt}, note="Injection attempt")
        if response.status_code == 422:
            html = response.get_data(as_text=True)
            assert f'data-field="{path}"' in html, attempt
            assert "<script>alert(1)" not in html  # what was typed is shown again, escaped
            continue
        assert field not in STRICT, f"{field} accepted {attempt!r}"
        assert not (field == "display_name" and "\n" in attempt), "a display name must stay on one line"
        assert response.status_code == 303, attempt
        version = int(response.headers["Location"].rsplit("/", 1)[1])
        assert post_action(admin, f"/configuration/versions/{version}/publish", note="publish").status_code == 303
        _assert_inert(app, world, field, attempt)
        accepted.append(attempt)
    assert accepted == _expected_accepted(field)
    with studio_scope(app, world.a.id) as studio:
        assert studio.config_version == 1 + len(accepted)


@pytest.mark.parametrize("field", FIELDS)
def test_branding_payloads_through_the_api(app, world, make_api_key, field):
    token = make_api_key(["config:publish", "config:propose"])
    client = app.test_client()
    accepted = []
    for attempt in _attempts(field):
        body = {"config": {"branding": {field: attempt}}, "note": "Injection attempt"}
        response = client.post(f"{STUDIO}/api/admin/config/drafts", json=body, headers=bearer(token))
        proposal = client.post(f"{STUDIO}/api/admin/config/proposals", json=body, headers=bearer(token))
        assert proposal.status_code == response.status_code, attempt
        if response.status_code == 422:
            answer = response.get_json()
            assert answer["error"] == "invalid_config" and f"branding.{field}" in answer["fields"], attempt
            assert proposal.get_json()["fields"] == answer["fields"]
            continue
        assert field not in STRICT, f"{field} accepted {attempt!r}"
        assert not (field == "display_name" and "\n" in attempt), "a display name must stay on one line"
        assert response.status_code == 201, attempt
        version = response.get_json()["version"]
        assert client.post(f"{STUDIO}/api/admin/config/versions/{version}/publish",
                           headers=bearer(token)).status_code == 200
        _assert_inert(app, world, field, attempt)
        accepted.append(attempt)
    assert accepted == _expected_accepted(field)


def test_a_stored_document_that_bypassed_validation_still_cannot_reach_the_stylesheet(app, world):
    """Defence in depth: the stylesheet checks each value again as it writes it."""
    from portal.services.configuration.theme import stylesheet

    css = stylesheet({"branding": {"primary_color": "#fff;}</style><script>", "accent_color": "red",
                                   "font": "x;} body{}"}})
    assert STYLESHEET.fullmatch(css) and "script" not in css and "red" not in css
