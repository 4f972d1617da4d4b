"""Tenant scoping in one place.

Every ORM query on a `TenantMixin` model is filtered to the current studio by a `do_orm_execute` hook; a
query with no studio in scope fails loudly instead of reading every tenant's rows. Web requests under
`/s/<studio>/` enter the scope once (`portal.blueprints.studio_context`); jobs and CLI enter it with
`scoped(studio_id)`. The only ways around it are `all_tenants()` (a context) and the execution option
`ALL_TENANTS`, both greppable, and used only by ops views, webhook processing and the demo seed.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from portal.models.base import TenantMixin

_UNSCOPED = object()
_current: ContextVar[object | None] = ContextVar("portal_tenant", default=None)

#: Execution option for a single statement that must see every tenant: `.execution_options(**ALL_TENANTS)`.
ALL_TENANTS = {"all_tenants": True}


class TenantScopeError(RuntimeError):
    """A tenant-owned model was queried with no studio in scope."""


def current_studio_id() -> int | None:
    value = _current.get()
    return None if value is _UNSCOPED else value  # type: ignore[return-value]


def enter(studio_id: int):
    """Enter a studio's scope; returns a token for `leave`. Prefer `scoped()` outside request hooks."""
    return _current.set(studio_id)


def leave(token) -> None:
    _current.reset(token)


@contextlib.contextmanager
def scoped(studio_id: int):
    token = _current.set(studio_id)
    try:
        yield
    finally:
        _current.reset(token)


@contextlib.contextmanager
def all_tenants():
    """Opt out of tenant scoping (ops console, webhook processing, seeding)."""
    token = _current.set(_UNSCOPED)
    try:
        yield
    finally:
        _current.reset(token)


def _touches_tenant_model(state: ORMExecuteState) -> bool:
    return any(
        isinstance(m.class_, type) and issubclass(m.class_, TenantMixin)
        for m in state.all_mappers
    )


@event.listens_for(Session, "do_orm_execute")
def _scope_to_tenant(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.is_column_load or state.is_relationship_load:
        return  # criteria added to the parent query propagate to these loads
    if state.execution_options.get("all_tenants"):
        return
    value = _current.get()
    if value is _UNSCOPED:
        return
    if value is None:
        if _touches_tenant_model(state):
            raise TenantScopeError("query on a tenant-owned model outside any studio scope")
        return
    studio_id = value
    state.statement = state.statement.options(
        with_loader_criteria(TenantMixin, lambda cls: cls.studio_id == studio_id, include_aliases=True)
    )
