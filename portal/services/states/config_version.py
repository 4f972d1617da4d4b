"""A configuration version's life: a `draft` is published once; the version it replaces is `archived`.

| transition | from      | to        | when                                                   |
|------------|-----------|-----------|--------------------------------------------------------|
| publish    | draft     | published | an admin (or a key with `config:publish`) publishes it |
| retire     | published | archived  | another version is published in its place              |
| discard    | draft     | archived  | an admin throws the draft away                         |

A rollback is a new draft equal to an old version, published at once: history only grows.
"""
from __future__ import annotations

from portal.models import ConfigState, ConfigVersion
from portal.services.states.machine import Machine, Transition

S = ConfigState

MACHINE = Machine("configuration version", ConfigVersion, {
    "publish": Transition({S.DRAFT}, S.PUBLISHED, "published"),
    "retire": Transition({S.PUBLISHED}, S.ARCHIVED, "archived"),
    "discard": Transition({S.DRAFT}, S.ARCHIVED, "discarded"),
}, column="state")
