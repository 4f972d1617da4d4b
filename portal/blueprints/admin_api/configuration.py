"""Configuration through the admin API (SPEC "Studio admin"): versions, drafts, publish, rollback, diffs and
proposals. Reads need `config:read`, drafts, publishing and rollback `config:publish`, proposals `config:propose`."""
from __future__ import annotations

import re

from flask import g, jsonify, request

from portal.blueprints.admin_api import ApiRefusal, actor, bp, json_body, scope
from portal.clock import utcnow
from portal.models import ConfigProposal, ConfigVersion
from portal.services import configuration as config
from portal.services.configuration import proposals, schema


@bp.errorhandler(schema.InvalidConfig)
def _invalid_config(error: schema.InvalidConfig):
    return jsonify(error="invalid_config", detail="The configuration does not validate.", fields=error.fields), 422


def _version_json(row: ConfigVersion) -> dict:
    return {"version": row.version, "state": row.state.value, "author": row.author_label, "note": row.note,
            "created_at": row.created_at.isoformat(), "base_version": row.base_version,
            "published_at": row.published_at.isoformat() if row.published_at else None}


def _proposal_json(row: ConfigProposal) -> dict:
    return {"proposal": row.id, "state": row.state.value, "base_version": row.base_version, "note": row.note,
            "proposer": row.proposer_label, "changes": row.changes, "created_at": row.created_at.isoformat(),
            "draft_version": row.draft_version}


def _note(body: dict) -> str:
    note = body.get("note", "")
    if not isinstance(note, str):
        raise ApiRefusal(422, "note_invalid", "`note` must be a string.")
    return note.strip()[:2000]


def _optional_body() -> dict:
    """Publish and rollback take an optional JSON body (a note)."""
    if not request.get_data():
        return {}
    return json_body()


def _config_changes(body: dict) -> dict:
    changes = body.get("config")
    if not isinstance(changes, dict):
        raise schema.InvalidConfig({"config": "must be an object of settings (a partial configuration)"})
    return changes


@bp.get("/config/versions")
@scope("config:read")
def config_versions():
    return jsonify(versions=[_version_json(row) for row in config.versions(g.studio)])


@bp.get("/config/versions/<int:version>")
@scope("config:read")
def config_version(version: int):
    row = config.get_version(g.studio, version)
    return jsonify(version=row.version, state=row.state.value, config=row.document, author=row.author_label,
                   note=row.note, created_at=row.created_at.isoformat(), base_version=row.base_version)


@bp.post("/config/drafts")
@scope("config:publish")
def config_create_draft():
    body = json_body()
    draft = config.create_draft(g.studio, _config_changes(body), actor=actor(), note=_note(body), now=utcnow())
    return jsonify(version=draft.version, state=draft.state.value), 201


@bp.post("/config/versions/<int:version>/publish")
@scope("config:publish")
def config_publish(version: int):
    row = config.publish(g.studio, version, actor=actor(), note=_note(_optional_body()), now=utcnow())
    return jsonify(version=row.version, state=row.state.value)


@bp.post("/config/versions/<int:version>/rollback")
@scope("config:publish")
def config_rollback(version: int):
    row = config.rollback(g.studio, version, actor=actor(), note=_note(_optional_body()), now=utcnow())
    return jsonify(version=row.version, state=row.state.value, copy_of=version), 201


@bp.get("/config/diff")
@scope("config:read")
def config_diff():
    numbers = {}
    for name in ("from", "to"):
        raw = (request.args.get(name) or "").strip()
        if not re.fullmatch(r"[1-9][0-9]{0,8}", raw):
            raise ApiRefusal(422, "parameter_invalid", f"`{name}` must be a version number (?from=1&to=2).")
        numbers[name] = int(raw)
    changes = config.diff(g.studio, numbers["from"], numbers["to"])
    return jsonify(**{"from": numbers["from"], "to": numbers["to"], "changes": changes})


@bp.post("/config/proposals")
@scope("config:propose")
def config_propose():
    body = json_body()
    key = g.get("api_key")
    proposal = proposals.propose(g.studio, _config_changes(body), actor=actor(),
                                 api_key_id=key.id if key is not None else None, note=_note(body), now=utcnow())
    return jsonify(proposal=proposal.id, state=proposal.state.value), 201


@bp.get("/config/proposals")
@scope("config:read")
def config_proposals():
    return jsonify(proposals=[_proposal_json(row) for row in proposals.recent(g.studio, limit=100)])


@bp.get("/config/proposals/<int:proposal_id>")
@scope("config:read")
def config_proposal(proposal_id: int):
    return jsonify(_proposal_json(proposals.get(g.studio, proposal_id)))
