"""Changes proposed through the API (a key with `config:propose`), waiting for an admin: approve into a draft (or
publish at once), or reject. Reviewed in the same field-level diff as versions."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from portal.extensions import db
from portal.models import ConfigProposal, ProposalState, Studio
from portal.services import audit
from portal.services.configuration import schema
from portal.services.configuration.versions import add_draft, document_of, publish
from portal.services.errors import NotFound
from portal.services.states import config_proposal as proposal_states


def propose(studio: Studio, changes: dict, *, actor: audit.Actor, api_key_id: int | None, note: str,
            now: datetime) -> ConfigProposal:
    """Store a proposal (validated against the published document; `schema.InvalidConfig` otherwise)."""
    base = studio.config_version
    document = schema.validate(schema.merge(document_of(studio, base), changes))
    proposal = ConfigProposal(studio_id=studio.id, changes=changes, document=document, base_version=base,
                              api_key_id=api_key_id, proposer_label=actor.label, note=note[:2000], created_at=now,
                              updated_at=now)
    db.session.add(proposal)
    db.session.flush()
    audit.record(actor=actor, action="config.propose", target_type="proposal", target_id=proposal.id,
                 studio_id=studio.id, now=now, note=note,
                 after={"base_version": base, "changes": schema.diff(document_of(studio, base), document)})
    db.session.commit()
    return proposal


def get(studio: Studio, proposal_id: int) -> ConfigProposal:
    proposal = db.session.scalar(select(ConfigProposal).where(ConfigProposal.id == proposal_id,
                                                              ConfigProposal.studio_id == studio.id))
    if proposal is None:
        raise NotFound("No such proposal.")
    return proposal


def pending(studio: Studio) -> list[ConfigProposal]:
    return db.session.scalars(select(ConfigProposal).where(ConfigProposal.studio_id == studio.id,
                                                           ConfigProposal.state == ProposalState.PENDING)
                              .order_by(ConfigProposal.id.desc())).all()


def approve(studio: Studio, proposal_id: int, *, actor: audit.Actor, note: str, publish_now: bool,
            now: datetime) -> int:
    """Turn the proposal into a draft (made from the version it was proposed against), published at once when
    asked; returns the version. A second approval of the same proposal is refused (409)."""
    proposal = get(studio, proposal_id)
    draft = add_draft(studio, proposal.document, base_version=proposal.base_version, actor=actor,
                      note=f"From proposal #{proposal.id} by {proposal.proposer_label}. {note}".strip(), now=now)
    proposal_states.MACHINE.apply(proposal.id, "approve", now=now, actor=actor, note=note,
                                  values={"decided_by": actor.user_id, "decided_at": now, "decision_note": note,
                                          "draft_version": draft.version},
                                  after={"draft_version": draft.version})
    db.session.commit()
    if publish_now:
        publish(studio, draft.version, actor=actor, note=note or f"Proposal #{proposal_id}.", now=now)
    return draft.version


def reject(studio: Studio, proposal_id: int, *, actor: audit.Actor, note: str, now: datetime) -> None:
    proposal = get(studio, proposal_id)
    proposal_states.MACHINE.apply(proposal.id, "reject", now=now, actor=actor, note=note,
                                  values={"decided_by": actor.user_id, "decided_at": now, "decision_note": note})
    db.session.commit()
