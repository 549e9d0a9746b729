"""What the live WebSocket sends (JSON objects, each with ``type``); pure builders.

Server to browser:

- ``hello``: ``{user_id, name, role, tenant, extension, heartbeat_s, supervisor}`` once
  the first message's token was accepted;
- ``screen-pop``: a call is about to ring this agent (``call.offered``), before the
  INVITE leaves the node: ``{call_id, caller, number, label, direction, offered, at_ms,
  sent_ms, contact}``; ``contact`` is ``{id, name, category, vip, owner_user_id,
  owner_name}`` or null ("unknown number");
- ``card``: what the database adds to a pop shortly after it: ``{call_id, contact: {id,
  name, category, vip, owner_user_id, owner_name, company_id, company_name, deals: [{id,
  title, stage}]}}``;
- ``call``: any other event of a call the user takes part in (supervisors: any call of
  the tenant): ``{event, call_id, caller, callee, number, direction, end_reason,
  answered_by, answered_by_user_id, at_ms, sent_ms, contact}``; supervisors also get
  ``call.offered`` this way;
- ``agents``: supervisors and tenant admins: ``{agents: [{user_id, name, extension,
  presence, state, call_id, since_ms, until_ms}]}``, the whole tenant, on connect and on
  every change;
- ``board``: supervisors and tenant admins, once on connect (after ``agents``): the
  tenant's calls in progress in every city, ``{at_ms, calls: [<call row>]}``; then
  deltas: ``board-call`` ``{call: <call row>}`` whenever a call comes or changes (a
  row replaces the one with its ``call_id``), ``board-call-ended`` ``{call_id, at_ms}``
  when it leaves the board. A call row is ``{call_id, state (routing | queued |
  ringing | talking), since_ms, started_ms, direction, caller, callee, contact, number, label,
  city, node, queue, queued_ms, ringing: [extension], answered_by, answered_by_name,
  partial}``: ``queue`` is the group whose queue it waits in ('' none) and
  ``queued_ms`` since when (its place; a caller an offer rings for is still waiting
  there), ``partial`` a call this replica knows only from Redis (a queue's keys, the
  agents' talking set): caller and number unknown. The callers waiting in a queue are
  the rows with that ``queue``, in ``queued_ms`` order;
- ``ping`` every ``heartbeat_s``; ``pong`` to a browser's ``ping``.

Browser to server: ``{"type": "auth", "token": ...}`` first (never the token in the URL),
then ``ping``/``pong``.

Close codes: 4401 no valid token in the first message, 4403 a credential that is neither a
user nor a supervisor's API key, 4408 no first message within the auth timeout, 1013 the
control API could not be asked (try again later), 4429 a browser too slow to read its feed.
"""

from __future__ import annotations

from typing import Any

from vpbx_common.crm import CrmContact, CrmContactError
from vpbx_common.events import CallEvent

from ..identity import TenantDirectory
from .board import AgentLive, LiveCall
from .cards import CallerCard

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_SLOW = 4429
CLOSE_TRY_LATER = 1013


def owner_name(directory: TenantDirectory, owner_user_id: str | None) -> str:
    if owner_user_id is None:
        return ""
    user = directory.users.get(owner_user_id)
    return user.name if user is not None else ""


def contact_summary(event: CallEvent, directory: TenantDirectory) -> dict[str, Any] | None:
    return _summary(event.crm_contact, directory)


def _summary(contact: CrmContact | None, directory: TenantDirectory) -> dict[str, Any] | None:
    if contact is None:
        return None
    return {
        "id": contact.id,
        "name": contact.name,
        "category": contact.category,
        "vip": contact.vip,
        "owner_user_id": contact.owner_user_id,
        "owner_name": owner_name(directory, contact.owner_user_id),
    }


def screen_pop(event: CallEvent, directory: TenantDirectory, sent_ms: int) -> dict[str, Any]:
    return {
        "type": "screen-pop",
        "call_id": event.call_id,
        "caller": event.caller,
        "number": event.number,
        "label": event.label,
        "direction": event.direction,
        "offered": list(event.offered),
        "at_ms": event.at_ms,
        "sent_ms": sent_ms,
        "contact": contact_summary(event, directory),
    }


def card(call_id: str, found: CallerCard, directory: TenantDirectory) -> dict[str, Any]:
    return {
        "type": "card",
        "call_id": call_id,
        "contact": {
            "id": found.contact_id,
            "name": found.name,
            "category": found.category,
            "vip": found.vip,
            "owner_user_id": found.owner_user_id,
            "owner_name": owner_name(directory, found.owner_user_id),
            "company_id": found.company_id,
            "company_name": found.company_name,
            "deals": [
                {"id": deal.id, "title": deal.title, "stage": deal.stage} for deal in found.deals
            ],
        },
    }


def call_event(
    event: CallEvent, answered_by: str, directory: TenantDirectory, sent_ms: int
) -> dict[str, Any]:
    answerer = directory.by_extension.get(answered_by) if answered_by else None
    return {
        "type": "call",
        "event": event.type.value,
        "call_id": event.call_id,
        "caller": event.caller,
        "callee": event.callee,
        "number": event.number,
        "direction": event.direction,
        "end_reason": event.end_reason,
        "answered_by": answered_by,
        "answered_by_user_id": answerer.id if answerer is not None else None,
        "at_ms": event.at_ms,
        "sent_ms": sent_ms,
        "contact": contact_summary(event, directory),
    }


def agents(
    directory: TenantDirectory,
    states: dict[str, AgentLive],
    presence: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every user of the tenant with an extension, by name; ``presence`` (extension ->
    value) is newer than the directory's where given."""
    people = sorted(
        (user for user in directory.directory.users if user.extension),
        key=lambda user: (user.name.casefold(), user.id),
    )
    rows = []
    for user in people:
        extension = user.extension or ""
        live = states.get(extension)
        rows.append(
            {
                "user_id": user.id,
                "name": user.name,
                "extension": extension,
                "presence": (presence or {}).get(extension, user.presence),
                "state": live.activity.value if live else "idle",
                "call_id": live.call_id if live else "",
                "since_ms": live.since_ms if live else 0,
                "until_ms": live.until_ms if live else 0,
            }
        )
    return {"type": "agents", "agents": rows}


def call_row(call: LiveCall, directory: TenantDirectory) -> dict[str, Any]:
    answerer = directory.by_extension.get(call.answered_by) if call.answered_by else None
    contact: CrmContact | None = None
    if call.contact is not None:
        try:
            contact = CrmContact.from_dict(call.contact)
        except CrmContactError:
            contact = None  # checked when the event was read: cannot happen
    return {
        "call_id": call.call_id,
        "state": call.state.value,
        "since_ms": call.since_ms,
        "started_ms": call.started_ms,
        "direction": call.direction,
        "caller": call.party,
        "callee": call.callee,
        "contact": _summary(contact, directory),
        "number": call.number,
        "label": call.label,
        "city": call.city,
        "node": call.node,
        "queue": call.queue,
        "queued_ms": call.queued_ms,
        "ringing": sorted(call.offered) if not call.answered_ms else [],
        "answered_by": call.answered_by,
        "answered_by_name": answerer.name if answerer is not None else "",
        "partial": call.partial,
    }


def board(calls: list[LiveCall], directory: TenantDirectory, at_ms: int) -> dict[str, Any]:
    return {
        "type": "board",
        "at_ms": at_ms,
        "calls": [call_row(call, directory) for call in calls],
    }


def board_call(call: LiveCall, directory: TenantDirectory) -> dict[str, Any]:
    return {"type": "board-call", "call": call_row(call, directory)}


def board_call_ended(call_id: str, at_ms: int) -> dict[str, Any]:
    return {"type": "board-call-ended", "call_id": call_id, "at_ms": at_ms}
