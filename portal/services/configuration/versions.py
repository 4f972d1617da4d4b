"""Configuration versions: drafts, atomic publishing, rollback, diffs, and the published document per request.

Publishing is one transaction: the studio row is moved from the draft's base version to the draft's version with a
conditional update (so of two admins publishing at once exactly one wins, and a draft made before another publish
is refused rather than silently undoing it), the old version is archived, the draft becomes published, and the
booking rules and policy are written onto the studio row, where every request reads them.

The published document of a studio is cached in each process by `(studio id, version)`: a request reads the
studio row anyway, so a publish is seen by every worker on its next request, with no invalidation messages. The
cache belongs to the app (one per database), so two apps in one process never see each other's documents.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal import tenancy
from portal.extensions import db
from portal.lru import LRU, app_cache
from portal.models import ConfigState, ConfigVersion, Package, Studio
from portal.services import audit
from portal.services.configuration import schema
from portal.services.errors import Conflict, NotFound
from portal.services.states import config_version as version_states

DEFAULT_COLORS = ("#4b3fa7", "#c8553d")


def initial_document(studio: Studio, package_slugs: list[str]) -> dict:
    """Version 1 of a new studio: its settings as they are, its packages in the order given."""
    return schema.validate({
        "branding": {"display_name": studio.name[:80], "primary_color": DEFAULT_COLORS[0],
                     "accent_color": DEFAULT_COLORS[1]},
        "booking": {"min_notice_minutes": studio.min_notice_minutes,
                    "slot_interval_minutes": studio.slot_interval_minutes, "buffer_minutes": studio.buffer_minutes,
                    "hold_minutes": studio.hold_minutes, "horizon_days": studio.booking_horizon_days,
                    "series_max_weeks": studio.series_max_weeks or 16,
                    "waitlist_offer_minutes": studio.waitlist_offer_minutes or 120,
                    "makeup_valid_days": studio.makeup_valid_days or 90},
        "policy": studio.policy_snapshot(),
        "packages": {slug: {"position": i} for i, slug in enumerate(package_slugs)},
    })


def start(studio: Studio, *, now: datetime, actor: audit.Actor = audit.SYSTEM, branding: dict | None = None) -> None:
    """Give a studio without configuration its version 1, published (its packages as they are now). The caller
    commits."""
    if studio.config_version:
        return
    with tenancy.scoped(studio.id):
        slugs = db.session.scalars(select(Package.slug).where(Package.studio_id == studio.id)
                                   .order_by(Package.id)).all()
    document = initial_document(studio, list(slugs))
    if branding:
        document = schema.validate(schema.merge(document, {"branding": branding}))
    db.session.add(ConfigVersion(studio_id=studio.id, version=1, state=ConfigState.PUBLISHED, document=document,
                                 author_kind=actor.kind, author_id=actor.user_id, author_label=actor.label,
                                 note="First version.", published_at=now, created_at=now, updated_at=now))
    _project(studio.id, document, version=1)


# --- reading --------------------------------------------------------------------------------------------------

def _cache() -> LRU:
    """Published documents by (studio id, version); a published version never changes."""
    return app_cache("configuration_documents")


def document_of(studio: Studio, version: int | None = None) -> dict:
    """A version's document (default: the published one). Treat it as read-only: it may be shared."""
    version = version or studio.config_version
    if not 0 < version <= LARGEST_ID:
        raise NotFound(f"This studio has no configuration version {version}.")
    key = (studio.id, version)
    cache = _cache()
    found = cache.get(key)
    if found is None:
        with tenancy.scoped(studio.id):
            row = db.session.execute(select(ConfigVersion.document, ConfigVersion.state).where(
                ConfigVersion.studio_id == studio.id, ConfigVersion.version == version)).one_or_none()
        if row is None:
            raise NotFound(f"This studio has no configuration version {version}.")
        found = row.document
        if row.state != ConfigState.DRAFT:  # drafts are cached by nobody: they are only previewed
            cache.put(key, found)
    return found


#: Row ids and version numbers are 32-bit integers: anything larger names nothing (and must not reach a query).
LARGEST_ID = 2**31 - 1


def get_version(studio: Studio, version: int) -> ConfigVersion:
    if not 0 < version <= LARGEST_ID:
        raise NotFound(f"No configuration version {version}.")
    row = db.session.scalar(select(ConfigVersion).where(ConfigVersion.studio_id == studio.id,
                                                        ConfigVersion.version == version))
    if row is None:
        raise NotFound(f"No configuration version {version}.")
    return row


def versions(studio: Studio) -> list[ConfigVersion]:
    return db.session.scalars(select(ConfigVersion).where(ConfigVersion.studio_id == studio.id)
                              .order_by(ConfigVersion.version.desc())).all()


def diff(studio: Studio, before: int, after: int) -> list[dict]:
    """Field-level changes from version `before` to version `after` (`NotFound` for an unknown version)."""
    return schema.diff(document_of(studio, before) if before else {}, document_of(studio, after))


def open_drafts(studio: Studio) -> list[ConfigVersion]:
    return db.session.scalars(select(ConfigVersion).where(ConfigVersion.studio_id == studio.id,
                                                          ConfigVersion.state == ConfigState.DRAFT)
                              .order_by(ConfigVersion.version.desc())).all()


# --- changing -------------------------------------------------------------------------------------------------

def _next_version(studio_id: int) -> int:
    return (db.session.scalar(select(func.max(ConfigVersion.version)).where(ConfigVersion.studio_id == studio_id))
            or 0) + 1


def add_draft(studio: Studio, document: dict, *, base_version: int, actor: audit.Actor, note: str,
              now: datetime) -> ConfigVersion:
    """Store a validated whole document as a new draft (the caller commits). The version number is the next free
    one; two drafts made at the same moment get different numbers (a unique constraint, then a retry)."""
    document = schema.validate(document)
    for _ in range(3):
        draft = ConfigVersion(studio_id=studio.id, version=_next_version(studio.id), state=ConfigState.DRAFT,
                              document=document, base_version=base_version, author_kind=actor.kind,
                              author_id=actor.user_id, author_label=actor.label, note=note[:2000], created_at=now,
                              updated_at=now)
        try:
            with db.session.begin_nested():
                db.session.add(draft)  # rolled back with the savepoint (and out of the session) if the number is taken
                db.session.flush()
        except IntegrityError:
            continue
        audit.record(actor=actor, action="config.draft", target_type="configuration version",
                     target_id=draft.id, studio_id=studio.id, now=now, note=note,
                     before={"version": base_version},
                     after={"version": draft.version, "changes": schema.diff(document_of(studio, base_version),
                                                                              document)})
        return draft
    raise Conflict("Another draft was being saved at the same moment. Please try again.")


def create_draft(studio: Studio, changes: dict, *, actor: audit.Actor, note: str, now: datetime) -> ConfigVersion:
    """A draft of the published document with `changes` laid over it; `schema.InvalidConfig` when it does not
    validate (nothing is stored)."""
    base = studio.config_version
    document = schema.validate(schema.merge(document_of(studio, base), changes))
    draft = add_draft(studio, document, base_version=base, actor=actor, note=note, now=now)
    db.session.commit()
    return draft


def update_draft(studio: Studio, version: int, changes: dict, *, actor: audit.Actor, note: str,
                 now: datetime) -> ConfigVersion:
    """Change a draft in place (the admin's forms save into one draft until it is published); `Conflict` when it
    is not a draft (any more), `schema.InvalidConfig` when the result does not validate."""
    draft = get_version(studio, version)
    if draft.state != ConfigState.DRAFT:
        raise Conflict(f"Version {version} is {draft.state.value}; only a draft can be changed.")
    before = draft.document
    document = schema.validate(schema.merge(before, changes))
    changed = db.session.execute(update(ConfigVersion).where(
        ConfigVersion.id == draft.id, ConfigVersion.state == ConfigState.DRAFT)
        .values(document=document, updated_at=now, note=note[:2000] or draft.note)
        .execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        db.session.rollback()
        raise Conflict("This draft was published or discarded meanwhile.")
    audit.record(actor=actor, action="config.edit_draft", target_type="configuration version", target_id=draft.id,
                 studio_id=studio.id, now=now, note=note, before={"version": version},
                 after={"version": version, "changes": schema.diff(before, document)})
    db.session.commit()
    return get_version(studio, version)


def _project(studio_id: int, document: dict, *, version: int, expected: int | None = None) -> bool:
    """Write the published version's booking rules and policy onto the studio row, moving `config_version` from
    `expected` (when given) to `version`. False when the studio's published version is no longer `expected`."""
    rules, policy = document["booking"], document["policy"]
    statement = update(Studio).where(Studio.id == studio_id)
    if expected is not None:
        statement = statement.where(Studio.config_version == expected)
    return db.session.execute(statement.values(
        config_version=version, min_notice_minutes=rules["min_notice_minutes"],
        slot_interval_minutes=rules["slot_interval_minutes"], buffer_minutes=rules["buffer_minutes"],
        hold_minutes=rules["hold_minutes"], booking_horizon_days=rules["horizon_days"],
        series_max_weeks=rules.get("series_max_weeks", 16),
        waitlist_offer_minutes=rules.get("waitlist_offer_minutes", 120),
        makeup_valid_days=rules.get("makeup_valid_days", 90),
        cancel_window_hours=policy["cancel_window_hours"], late_cancel_fee_percent=policy["late_cancel_fee_percent"],
        reschedule_lead_hours=policy["reschedule_lead_hours"], max_reschedules=policy["max_reschedules"],
        late_cancel_makeup=policy["late_cancel_makeup"]).execution_options(synchronize_session=False)
    ).rowcount == 1


def publish_within(studio_id: int, draft: ConfigVersion, *, actor: audit.Actor, note: str,
                   now: datetime) -> None:
    """Publish `draft` inside the caller's transaction (the caller commits, or rolls back on `Conflict`).

    The studio row moves from the draft's base version to the draft with a conditional update: of two publishes
    at the same moment the second waits for the first and then finds the base gone (409), and a draft made before
    another publish can never silently undo it. The draft itself must be unchanged since it was read, so what is
    written onto the studio row is what becomes the published document.
    """
    version, base = draft.version, draft.base_version
    if draft.state != ConfigState.DRAFT:
        raise Conflict(f"Version {version} is {draft.state.value}: only a draft can be published, and only once.")
    if base is None or not _project(studio_id, draft.document, version=version, expected=base):
        current = db.session.scalar(select(Studio.config_version).where(Studio.id == studio_id))
        if current == version:
            raise Conflict(f"Version {version} was published a moment ago: a draft is published only once.")
        raise Conflict(f"Version {current} was published after this draft was made from version {base}. "
                       "Make a new draft from the published configuration, or roll back to this one.")
    previous = db.session.scalar(select(ConfigVersion.id).where(
        ConfigVersion.studio_id == studio_id, ConfigVersion.version == base))
    version_states.MACHINE.apply(previous, "retire", now=now)
    version_states.MACHINE.apply(draft.id, "publish", now=now, actor=actor, note=note,
                                 values={"published_at": now}, where=(ConfigVersion.updated_at == draft.updated_at,),
                                 before={"version": base}, after={"version": version},
                                 stale="This draft was changed while it was being published. Review it and publish "
                                       "again.")


def audit_refusal(studio_id: int, *, action: str, target_id: int | None, actor: audit.Actor, note: str,
                  now: datetime, before: dict, after: dict) -> None:
    """Undo the refused change and audit the attempt on its own."""
    db.session.rollback()
    audit.record(actor=actor, action=action, target_type="configuration version", target_id=target_id,
                 studio_id=studio_id, now=now, note=note, before=before, after=after)
    db.session.commit()


def publish(studio: Studio, version: int, *, actor: audit.Actor, note: str, now: datetime) -> ConfigVersion:
    """Publish draft `version` atomically. `Conflict` (409) when it is not a draft (a draft is published once), or
    when the published version moved since the draft was made; the refused attempt is audited too."""
    studio_id = studio.id
    draft = get_version(studio, version)
    draft_id, base = draft.id, draft.base_version
    try:
        publish_within(studio_id, draft, actor=actor, note=note, now=now)
        db.session.commit()
    except Conflict as refused:
        audit_refusal(studio_id, action="config.publish_refused", target_id=draft_id, actor=actor, note=note,
                      now=now, before={"version": base}, after={"version": version, "reason": refused.message})
        raise
    db.session.expire_all()
    return get_version(studio, version)


def rollback(studio: Studio, version: int, *, actor: audit.Actor, note: str, now: datetime) -> ConfigVersion:
    """Publish a new version equal to `version`, in one transaction (history only grows). Only a version that was
    published once can be rolled back to; a refused rollback changes nothing and is audited."""
    source = get_version(studio, version)
    if source.published_at is None:
        raise Conflict(f"Version {version} was never published, so there is nothing to roll back to. "
                       + ("Publish it instead." if source.state == ConfigState.DRAFT else ""))
    studio_id, base = studio.id, studio.config_version
    note = note or f"Rollback to version {version}."
    try:
        draft = add_draft(studio, source.document, base_version=base, actor=actor, now=now, note=note)
        audit.record(actor=actor, action="config.rollback", target_type="configuration version", target_id=draft.id,
                     studio_id=studio_id, now=now, note=note, before={"version": base},
                     after={"version": draft.version, "copy_of": version})
        publish_within(studio_id, draft, actor=actor, note=note, now=now)
        new_version = draft.version
        db.session.commit()
    except Conflict as refused:
        audit_refusal(studio_id, action="config.rollback_refused", target_id=source.id, actor=actor, note=note,
                      now=now, before={"version": base}, after={"copy_of": version, "reason": refused.message})
        raise
    db.session.expire_all()
    return get_version(studio, new_version)


def discard(studio: Studio, version: int, *, actor: audit.Actor, note: str, now: datetime) -> None:
    draft = get_version(studio, version)
    version_states.MACHINE.apply(draft.id, "discard", now=now, actor=actor, note=note,
                                 after={"version": version})
    db.session.commit()
