"""Sign-up and sign-in."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Membership, Role, Studio, User
from portal.services.errors import Conflict, InvalidInput

MIN_PASSWORD_LENGTH = 10
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def find_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == normalize_email(email)))


def authenticate(email: str, password: str) -> User | None:
    """The active user with these credentials, or None. Always hashes once, so timing does not reveal emails."""
    user = find_user(email)
    if user is None:
        User(password_hash="").set_password(password or "x")  # constant-ish work for unknown emails
        return None
    if not user.active or not user.check_password(password or ""):
        return None
    return user


def register_student(*, studio: Studio, email: str, password: str, name: str) -> User:
    """Create a student account in `studio`, or add the studio to an existing account with the same password."""
    email = normalize_email(email)
    if not _EMAIL.match(email) or len(email) > 254:
        raise InvalidInput("Enter a valid email address.", field="email")
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"Use at least {MIN_PASSWORD_LENGTH} characters for your password.", field="password")
    name = (name or "").strip()[:120]
    user = find_user(email)
    if user is not None:
        if not user.check_password(password):
            raise Conflict("An account with this email exists. Log in instead.", field="email")
        if user.has_role(studio.id, Role.STUDENT):
            return user
    else:
        user = User(email=email, name=name)
        user.set_password(password)
        db.session.add(user)
    db.session.add(Membership(user=user, studio_id=studio.id, role=Role.STUDENT))
    db.session.commit()
    return user


def default_studio_for(user: User) -> Studio | None:
    """Where to land after login: the first studio the user belongs to."""
    memberships = sorted(user.memberships, key=lambda m: (m.role != Role.ADMIN, m.id))
    return memberships[0].studio if memberships else None
