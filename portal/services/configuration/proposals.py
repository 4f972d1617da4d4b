"""Changes proposed through the API (a key with `config:propose`), waiting for an admin: approve into a draft (or
publish at once), or reject. Reviewed in the same field-level diff as versions.

A proposal keeps both what was sent (`changes`, a partial document) and the whole document it made against the
version published then (`base_version`). Approving it after another version was published lays the same changes
over the version published now, so an approved proposal never silently undoes a later publish.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from portal.extensions import db
from portal.models import ConfigProposal, ProposalState, Studio
from portal.services import audit
from portal.services.configuration import schema
from portal.services.configuration.versions import LARGEST_ID, add_draft, audit_refusal, document_of, publish_within
from portal.services.errors import Conflict, NotFound
from portal.services.states import config_proposal as proposal_states


def propose(studio: Studio, changes: dict, *, actor: audit.Actor, api_key_id: int | None, note: str,
            now: datetime) -> ConfigProposal:
    """Store a proposal (validated against the published document; `schema.InvalidConfig` otherwise)."""
    base = studio.config_version
    published = document_of(studio, base)
    document = schema.validate(schema.merge(published, changes))
    proposal = ConfigProposal(studio_id=studio.id, changes=changes, document=document, base_version=base,
                              api_key_id=api_key_id, proposer_label=actor.label, note=note[:2000], created_at=now,
                              updated_at=now)
    db.session.add(proposal)
    db.session.flush()
    audit.record(actor=actor, action="config.propose", target_type="proposal", target_id=proposal.id,
                 studio_id=studio.id, now=now, note=note,
                 after={"base_version": base, "changes": schema.diff(published, document)})
    db.session.commit()
    return proposal


def get(studio: Studio, proposal_id: int) -> ConfigProposal:
    if not 0 < proposal_id <= LARGEST_ID:
        raise NotFound("No such proposal.")
    proposal = db.session.scalar(select(ConfigProposal).where(ConfigProposal.id == proposal_id,
                                                              ConfigProposal.studio_id == studio.id))
    if proposal is None:
        raise NotFound("No such proposal.")
    return proposal


def pending(studio: Studio) -> list[ConfigProposal]:
    return db.session.scalars(select(ConfigProposal).where(ConfigProposal.studio_id == studio.id,
                                                           ConfigProposal.state == ProposalState.PENDING)
                              .order_by(ConfigProposal.id.desc())).all()


def recent(studio: Studio, limit: int = 20) -> list[ConfigProposal]:
    return db.session.scalars(select(ConfigProposal).where(ConfigProposal.studio_id == studio.id)
                              .order_by(ConfigProposal.id.desc()).limit(limit)).all()


def outcome(studio: Studio, proposal: ConfigProposal) -> dict:
    """The document approving `proposal` now would make: its own when nothing was published since it was made,
    else its changes laid over the published document (`schema.InvalidConfig` if they no longer fit)."""
    if proposal.base_version == studio.config_version:
        return proposal.document
    return schema.validate(schema.merge(document_of(studio), proposal.changes))


@dataclass(frozen=True)
class Review:
    """What an admin reviews: the proposal against the version it was made from, and against the published one."""

    proposal: ConfigProposal
    against_base: list[dict]
    against_published: list[dict]
    stale: bool          # another version was published since the proposal was made
    problem: dict | None  # field errors when its changes no longer fit the published version


def review(studio: Studio, proposal_id: int) -> Review:
    proposal = get(studio, proposal_id)
    against_base = schema.diff(document_of(studio, proposal.base_version), proposal.document)
    try:
        against_published, problem = schema.diff(document_of(studio), outcome(studio, proposal)), None
    except schema.InvalidConfig as invalid:
        against_published, problem = [], invalid.fields
    return Review(proposal, against_base, against_published, proposal.base_version != studio.config_version, problem)


def approve(studio: Studio, proposal_id: int, *, actor: audit.Actor, note: str, publish_now: bool,
            now: datetime) -> int:
    """Turn the proposal into a draft made from the published version, published at once when asked; returns the
    version. All or nothing: a second approval of the same proposal, or a publish that is refused, is a 409 that
    changes nothing (a refused publish is audited)."""
    proposal = get(studio, proposal_id)
    if proposal.state != ProposalState.PENDING:
        raise Conflict(f"This proposal was already {proposal.state.value}.")
    studio_id, base = studio.id, studio.config_version
    document = outcome(studio, proposal)
    approved = False
    try:
        draft = add_draft(studio, document, base_version=base, actor=actor, now=now,
                          note=f"From proposal #{proposal_id} by {proposal.proposer_label}. {note}".strip())
        version = draft.version
        proposal_states.MACHINE.apply(proposal_id, "approve", now=now, actor=actor, note=note,
                                      values={"decided_by": actor.user_id, "decided_at": now,
                                              "decision_note": note[:2000], "draft_version": version},
                                      after={"draft_version": version})
        approved = True
        if publish_now:
            publish_within(studio_id, draft, actor=actor, note=note or f"Proposal #{proposal_id}.", now=now)
        db.session.commit()
    except Conflict as refused:
        if approved:  # the publish was refused: audited, like any refused publish
            audit_refusal(studio_id, action="config.publish_refused", target_id=None, actor=actor, note=note,
                          now=now, before={"version": base},
                          after={"proposal": proposal_id, "reason": refused.message})
        else:
            db.session.rollback()
        raise
    db.session.expire_all()
    return version


def reject(studio: Studio, proposal_id: int, *, actor: audit.Actor, note: str, now: datetime) -> None:
    proposal = get(studio, proposal_id)
    proposal_states.MACHINE.apply(proposal.id, "reject", now=now, actor=actor, note=note,
                                  values={"decided_by": actor.user_id, "decided_at": now,
                                          "decision_note": note[:2000]})
    db.session.commit()
