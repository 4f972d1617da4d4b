"""The theme stylesheet: a published version's is public, long-cached, tagged and answers 304; a draft's is for the
studio's admins only and never cached, so a preview cannot leak into a cache or to a student."""
from __future__ import annotations

import re

from tests.admin.configuration_helpers import new_draft, post_action, publish
from tests.admin.conftest import OTHER, STUDIO, log_in

SHAPE = re.compile(r":root \{\n  --brand: #[0-9a-f]{6};\n  --brand-ink: #[0-9a-f]{6};\n  --accent: #[0-9a-f]{6};\n"
                   r"  --accent-ink: #[0-9a-f]{6};\n  --brand-font: [^;{}<>\n]+;\n\}\n")


def _client(app, email=None):
    client = app.test_client()
    if email:
        client.csrf = log_in(client, email)
    return client


def test_a_published_stylesheet_is_public_immutable_and_answers_304(app, world):
    for who in (None, "student@example.com", "admin@example.com"):
        client = _client(app, who)
        response = client.get(f"{STUDIO}/theme/1.css")
        assert response.status_code == 200, who
        assert response.mimetype == "text/css"
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable", who
        assert "Set-Cookie" not in response.headers
        assert SHAPE.fullmatch(response.get_data(as_text=True))
        assert "--brand: #4b3fa7;" in response.get_data(as_text=True)
        etag = response.headers["ETag"]
        again = client.get(f"{STUDIO}/theme/1.css", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.get_data() == b"" and again.headers["ETag"] == etag, who


def test_the_etag_follows_the_content(app, world):
    """Two studios with the same colours share a tag (the same bytes); other colours get another."""
    first = _client(app).get(f"{STUDIO}/theme/1.css").headers["ETag"]
    assert _client(app).get(f"{OTHER}/theme/1.css").headers["ETag"] == first
    publish(app, world.b.id, new_draft(app, world.b.id, {"branding": {"accent_color": "#010101"}}))
    other = _client(app).get(f"{OTHER}/theme/2.css")
    assert "--accent: #010101;" in other.get_data(as_text=True) and other.headers["ETag"] != first


def test_a_drafts_stylesheet_is_private_and_hidden_from_everyone_but_the_admins(app, world):
    draft = new_draft(app, world.a.id, {"branding": {"primary_color": "#abcdef"}})
    admin = _client(app, "admin@example.com").get(f"{STUDIO}/theme/{draft}.css")
    assert admin.status_code == 200 and "--brand: #abcdef;" in admin.get_data(as_text=True)
    assert admin.headers["Cache-Control"] == "private, no-store"
    assert "ETag" not in admin.headers
    for who in (None, "student@example.com", "north-admin@example.com", "ops@example.com"):
        response = _client(app, who).get(f"{STUDIO}/theme/{draft}.css")
        assert response.status_code == 404, who
        assert "#abcdef" not in response.get_data(as_text=True)
    assert _client(app).get(f"{STUDIO}/theme/99.css").status_code == 404


def test_a_preview_never_changes_the_published_stylesheet_or_the_public_config(app, world):
    admin = _client(app, "admin@example.com")
    draft = new_draft(app, world.a.id, {"branding": {"primary_color": "#abcdef", "display_name": "Secret"}})
    before = _client(app).get(f"{STUDIO}/theme/1.css")
    post_action(admin, f"/configuration/versions/{draft}/preview")
    assert f"/theme/{draft}.css" in admin.get(f"{STUDIO}/").get_data(as_text=True)
    for who in (None, "student@example.com", "admin@example.com"):
        client = _client(app, who)
        after = client.get(f"{STUDIO}/theme/1.css")
        assert (after.get_data(), after.headers["ETag"]) == (before.get_data(), before.headers["ETag"])
        assert client.get(f"{STUDIO}/api/config").get_json()["version"] == 1
    student_page = _client(app, "student@example.com").get(f"{STUDIO}/").get_data(as_text=True)
    assert f"/theme/{draft}.css" not in student_page and "Secret" not in student_page
    assert "Secret" not in _client(app).get(f"{STUDIO}/").get_data(as_text=True)


def test_a_published_draft_gets_a_cacheable_stylesheet_under_its_own_address(app, world):
    admin = _client(app, "admin@example.com")
    draft = new_draft(app, world.a.id, {"branding": {"primary_color": "#abcdef"}})
    assert _client(app).get(f"{STUDIO}/theme/{draft}.css").status_code == 404
    post_action(admin, f"/configuration/versions/{draft}/publish", note="go")
    response = _client(app).get(f"{STUDIO}/theme/{draft}.css")
    assert response.status_code == 200 and "--brand: #abcdef;" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    page = _client(app).get(f"{STUDIO}/").get_data(as_text=True)
    assert f'href="/s/melody-and-meter/theme/{draft}.css"' in page


def test_text_on_any_brand_colour_meets_wcag_aa():
    """Every colour an admin can pick (a 4-bit grid of the RGB cube, and the default accent that once fell short)
    gets the ink that reads on it at 4.5:1 or better."""
    from portal.services.configuration.theme import _luminance, ink_on

    def contrast(a: str, b: str) -> float:
        high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
        return (high + 0.05) / (low + 0.05)

    grid = [f"#{r:02x}{g:02x}{b:02x}" for r in range(0, 256, 17) for g in range(0, 256, 17) for b in range(0, 256, 17)]
    worst = min(grid + ["#c8553d", "#d4a017", "#4b3fa7"], key=lambda colour: contrast(colour, ink_on(colour)))
    assert contrast(worst, ink_on(worst)) >= 4.5, worst
