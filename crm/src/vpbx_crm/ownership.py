"""Who may make whom responsible for a client.

Supervisors and tenant admins assign and reassign anyone's clients. An agent may take an
unowned client (or one of their own) for themselves, or let go of their own; moving a
colleague's client is a supervisor's decision (the "whose client is it" disputes CRMs
exist to end).
"""

from __future__ import annotations

import uuid

from vpbx_control.auth.principal import MANAGERS

from .errors import Forbidden, IdentityUnavailable, ReferenceNotFound
from .identity import Caller, IdentityClient, IdentityUnavailableError


async def check_owner(
    identity: IdentityClient,
    caller: Caller,
    new_owner: uuid.UUID | None,
    current_owner: uuid.UUID | None,
    field: str,
) -> None:
    """Refuse an owner who is not a user of the tenant (404 naming ``field``), and a change
    the caller's role may not make (403)."""
    if new_owner is not None:
        try:
            user = await identity.user(caller.tenant, str(new_owner))
        except IdentityUnavailableError as exc:
            raise IdentityUnavailable() from exc
        if user is None:
            raise ReferenceNotFound(field, "user")
    if caller.role in MANAGERS:
        return
    me = caller.user_id
    taking_free_or_own = current_owner in (None, me) and new_owner in (None, me)
    if me is None or not taking_free_or_own:
        raise Forbidden("only supervisors and tenant admins give a client to another manager")
