"""Steps shared by the configuration, API key and audit log tests: reading forms out of pages, saving drafts through
the editor, and calling the configuration services outside any request."""
from __future__ import annotations

from contextlib import contextmanager
from html.parser import HTMLParser

from sqlalchemy import select

from portal import tenancy
from portal.clock import utcnow
from portal.extensions import db
from portal.models import AuditEntry, ConfigVersion, Studio
from portal.services import audit, configuration
from tests.admin.conftest import STUDIO

ADMIN = audit.Actor("user", "admin@example.com")


class _Forms(HTMLParser):
    """Every form of a page with the values a browser would submit (unchecked boxes left out)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._select: str | None = None
        self._select_first: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "id": a.get("id", ""), "fields": {}})
        elif not self.forms:
            return
        fields = self.forms[-1]["fields"]
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            if kind in ("submit", "button"):
                return
            fields[a["name"]] = a.get("value", "on" if kind == "checkbox" else "")
        elif tag == "select":
            self._select, self._select_first = a.get("name"), None
        elif tag == "option" and self._select:
            if self._select_first is None:
                self._select_first = a.get("value", "")
                fields.setdefault(self._select, self._select_first)
            if "selected" in a:
                fields[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a.get("name")
            fields[self._textarea] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea and self.forms:
            self.forms[-1]["fields"][self._textarea] += data


def form_fields(html: str, action_suffix: str) -> dict[str, str]:
    """The fields of the page's form whose action ends with `action_suffix`."""
    parser = _Forms()
    parser.feed(html)
    found = [f for f in parser.forms if f["action"].endswith(action_suffix)]
    assert found, f"no form posting to …{action_suffix}: {[f['action'] for f in parser.forms]}"
    return dict(found[0]["fields"])


def editor_fields(client, draft: int | None = None) -> dict[str, str]:
    path = f"{STUDIO}/admin/configuration/" + (f"versions/{draft}/edit" if draft else "edit")
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    return form_fields(page.get_data(as_text=True), f"versions/{draft}/edit" if draft else "/configuration/drafts")


def save_draft(client, changes: dict[str, str], *, note: str = "Try a change", draft: int | None = None,
               then: str = "view", drop: tuple[str, ...] = ()):
    """Fill the editor like an admin (starting from what it shows), change `changes`, and save."""
    fields = editor_fields(client, draft)
    fields.update(changes)
    for name in drop:
        fields.pop(name, None)
    fields.update(note=note, then=then)
    path = f"{STUDIO}/admin/configuration/" + (f"versions/{draft}/edit" if draft else "drafts")
    return client.post(path, data=fields)


def post_action(client, path: str, **data):
    return client.post(f"{STUDIO}/admin{path}", data={"csrf_token": client.csrf, **data})


@contextmanager
def studio_scope(app, studio_id: int):
    """An app context in the studio's tenant scope, closed (and its session removed) on the way out."""
    with app.app_context(), tenancy.scoped(studio_id):
        try:
            yield db.session.get(Studio, studio_id)
        finally:
            db.session.remove()


def new_draft(app, studio_id: int, changes: dict, *, note: str = "draft", actor=ADMIN) -> int:
    with studio_scope(app, studio_id) as studio:
        return configuration.create_draft(studio, changes, actor=actor, note=note, now=utcnow()).version


def publish(app, studio_id: int, version: int, *, note: str = "publish") -> None:
    with studio_scope(app, studio_id) as studio:
        configuration.publish(studio, version, actor=ADMIN, note=note, now=utcnow())


def published(app, studio_id: int) -> tuple[int, dict]:
    with studio_scope(app, studio_id) as studio:
        return studio.config_version, configuration.document_of(studio)


def version_rows(app, studio_id: int) -> dict[int, str]:
    with studio_scope(app, studio_id):
        return {row.version: row.state.value for row in db.session.scalars(select(ConfigVersion))}


def audit_rows(app, studio_id: int) -> list[AuditEntry]:
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).where(AuditEntry.studio_id == studio_id)
                                  .order_by(AuditEntry.id)).all()
        db.session.expunge_all()
        db.session.remove()
        return list(rows)
