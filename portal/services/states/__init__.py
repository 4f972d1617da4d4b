"""The life cycles of bookings, payments, refunds, webhook events, configuration versions and proposals.

One module per state machine (`booking`, `payment`, `refund`, `webhook_event`, `config_version`,
`config_proposal`), each with its table of allowed
transitions and one function per transition. Every status change in the portal goes through them: routes, jobs,
sweeps and the consoles call the same functions. The mechanics live in `machine.py`.
"""
from portal.services.states.machine import IllegalTransition, Machine, Transition

__all__ = ["IllegalTransition", "Machine", "Transition"]
