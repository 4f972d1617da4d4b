"""Studio API keys: `sp_<prefix>_<secret>`, shown once, stored as a SHA-256 of the secret, scoped, revocable.

The public prefix finds the row; the secret is compared in constant time. A key acts only for its own studio
(the caller checks `key.studio_id`).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update

from portal import tenancy
from portal.extensions import db
from portal.models import ApiKey, Studio
from portal.services import audit
from portal.services.errors import InvalidInput, NotFound

SCOPES = ("config:read", "config:propose", "config:publish", "bookings:read")
#: `last_used_at` is written at most this often per key, so a busy key does not write on every request.
TOUCH_EVERY = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(studio: Studio, *, name: str, scopes: list[str], actor: audit.Actor, now: datetime) -> tuple[ApiKey, str]:
    """A new key and its full secret (shown to the admin once, never again)."""
    name = (name or "").strip()
    if not name or len(name) > 80 or not name.isprintable():
        raise InvalidInput("Give the key a name: one line of up to 80 characters.", field="name")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidInput("Choose at least one scope: " + ", ".join(SCOPES) + ".", field="scopes")
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key = ApiKey(studio_id=studio.id, name=name, prefix=prefix, secret_hash=_digest(secret),
                 scopes=sorted(set(scopes)), created_by=actor.user_id, created_at=now)
    db.session.add(key)
    db.session.flush()
    audit.record(actor=actor, action="api_key.create", target_type="api key", target_id=key.id, studio_id=studio.id,
                 now=now, after={"name": name, "scopes": key.scopes, "prefix": prefix})
    db.session.commit()
    return key, f"sp_{prefix}_{secret}"


def authenticate(token: str, *, now: datetime) -> ApiKey | None:
    """The live key a bearer token names, of whichever studio (the caller checks it is this one), or None."""
    parts = (token or "").split("_", 2)
    if len(parts) != 3 or parts[0] != "sp" or not parts[1] or not parts[2]:
        return None
    with tenancy.all_tenants():
        key = db.session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
        if key is None or key.revoked_at is not None or not hmac.compare_digest(key.secret_hash, _digest(parts[2])):
            return None
        if key.last_used_at is None or now - key.last_used_at > TOUCH_EVERY:
            db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
            db.session.commit()
    return key


def get(studio: Studio, key_id: int) -> ApiKey:
    if not 0 < key_id < 2**31:
        raise NotFound("No such API key.")
    key = db.session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.studio_id == studio.id))
    if key is None:
        raise NotFound("No such API key.")
    return key


def revoke(studio: Studio, key_id: int, *, actor: audit.Actor, now: datetime, note: str = "") -> bool:
    """Revoke a key for good (its next request gets 401). False when it was already revoked (nothing changes)."""
    key = get(studio, key_id)
    changed = db.session.execute(update(ApiKey).where(ApiKey.id == key.id, ApiKey.revoked_at.is_(None))
                                 .values(revoked_at=now).execution_options(synchronize_session=False)).rowcount
    if changed != 1:
        db.session.rollback()
        return False
    audit.record(actor=actor, action="api_key.revoke", target_type="api key", target_id=key.id,
                 studio_id=studio.id, now=now, note=note[:2000],
                 before={"name": key.name, "prefix": key.prefix, "scopes": key.scopes, "revoked": False},
                 after={"revoked": True})
    db.session.commit()
    return True


def of_studio(studio: Studio) -> list[ApiKey]:
    return db.session.scalars(select(ApiKey).where(ApiKey.studio_id == studio.id).order_by(ApiKey.id.desc())).all()
