"""Publishing at the same moment, on PostgreSQL: of two admins publishing different drafts, exactly one version is
published and the other admin gets a 409; both attempts are in the audit log; a draft is published once."""
from __future__ import annotations

import importlib
import threading

import pytest
from sqlalchemy import select

from portal.clock import utcnow
from portal.extensions import db
from portal.models import ConfigState, ConfigVersion
from portal.services import configuration
from portal.services.audit import SYSTEM
from portal.services.errors import Conflict
from tests.admin.configuration_helpers import audit_rows, new_draft, published, studio_scope, version_rows
from tests.admin.conftest import STUDIO, log_in

versions = importlib.import_module("portal.services.configuration.versions")


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_two_admins_publish_different_drafts_at_the_same_moment(app, world, monkeypatch):
    first = new_draft(app, world.a.id, {"branding": {"primary_color": "#aa0000"}}, note="red")
    second = new_draft(app, world.a.id, {"branding": {"primary_color": "#0000aa"}}, note="blue")
    clients = []
    for email in ("admin@example.com", "second-admin@example.com"):
        client = app.test_client()
        client.csrf = log_in(client, email)
        clients.append(client)

    # Both requests have read their draft (still a draft, made from version 1) before either moves the studio:
    # the database's conditional update on the studio row decides, and the loser waits for the winner's commit.
    meet = threading.Barrier(2)
    real = versions._project

    def together(*args, **kwargs):
        meet.wait(timeout=10)
        return real(*args, **kwargs)

    monkeypatch.setattr(versions, "_project", together)
    start, outcomes, lock = threading.Barrier(2), {}, threading.Lock()

    def publish(client, version):
        start.wait(timeout=10)
        response = client.post(f"{STUDIO}/admin/configuration/versions/{version}/publish",
                               data={"csrf_token": client.csrf, "note": f"publish {version}"})
        with lock:
            outcomes[version] = (response.status_code, response.get_data(as_text=True))

    threads = [threading.Thread(target=publish, args=pair) for pair in zip(clients, (first, second), strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(status for status, _ in outcomes.values()) == [303, 409], outcomes
    winner = next(v for v, (status, _) in outcomes.items() if status == 303)
    loser = second if winner == first else first
    assert f"Version {winner} was published after this draft was made from version 1" in outcomes[loser][1]
    assert version_rows(app, world.a.id) == {1: "archived", winner: "published", loser: "draft"}
    version, document = published(app, world.a.id)
    assert (version, document["branding"]["primary_color"]) == (winner, "#aa0000" if winner == first else "#0000aa")
    with studio_scope(app, world.a.id):
        assert db.session.scalar(select(db.func.count()).where(ConfigVersion.state == ConfigState.PUBLISHED)) == 1
    attempts = {(row.action, row.note) for row in audit_rows(app, world.a.id)
                if row.action in ("configuration_version.publish", "config.publish_refused")}
    assert attempts == {("configuration_version.publish", f"publish {winner}"),
                        ("config.publish_refused", f"publish {loser}")}
    refused = next(r for r in audit_rows(app, world.a.id) if r.action == "config.publish_refused")
    assert refused.actor_label in ("admin@example.com", "second-admin@example.com")
    assert refused.after["version"] == loser and "was published after" in refused.after["reason"]

    monkeypatch.setattr(versions, "_project", real)
    again = clients[0].post(f"{STUDIO}/admin/configuration/versions/{winner}/publish",
                            data={"csrf_token": clients[0].csrf, "note": "once more"})
    assert again.status_code == 409
    assert version_rows(app, world.a.id) == {1: "archived", winner: "published", loser: "draft"}


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_the_same_draft_published_twice_at_once_is_published_once(app, world):
    draft = new_draft(app, world.a.id, {"branding": {"font": "serif"}})
    start, outcomes, lock = threading.Barrier(3), [], threading.Lock()

    def publish():
        with studio_scope(app, world.a.id) as studio:
            start.wait(timeout=10)
            try:
                configuration.publish(studio, draft, actor=SYSTEM, note="twice", now=utcnow())
                result = "published"
            except Conflict:
                result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=publish) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["published", "refused", "refused"]
    assert version_rows(app, world.a.id) == {1: "archived", draft: "published"}
    assert [r.action for r in audit_rows(app, world.a.id)].count("config.publish_refused") == 2
