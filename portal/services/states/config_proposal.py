"""A proposal's life: `pending` until an admin approves it (it becomes a draft, or is published) or rejects it.

| transition | from    | to       |
|------------|---------|----------|
| approve    | pending | approved |
| reject     | pending | rejected |
"""
from __future__ import annotations

from portal.models import ConfigProposal, ProposalState
from portal.services.states.machine import Machine, Transition

S = ProposalState

MACHINE = Machine("proposal", ConfigProposal, {
    "approve": Transition({S.PENDING}, S.APPROVED, "approved"),
    "reject": Transition({S.PENDING}, S.REJECTED, "rejected"),
}, column="state")
