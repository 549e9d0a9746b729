"""The crm-lookup step: ask the CRM who is calling, then route by what it knows.

The executor asks the CRM (``LookUpCaller``; the contract is ``vpbx_common.crm``) and
hands back ``CrmReply`` or ``CrmFailed``; the session waits at most the node's lookup
timeout. What an answer means is pure and lives here (``route_by_contact``):

- a contact with a responsible manager (``owner_user_id``) who is a user of this
  config, when the step says ``to_responsible_manager``: the escalation chain
  (``ManagerChain``): the manager, then every member of every group the manager is in,
  then everyone; the router rings the stages whose time is not 0;
- otherwise a contact whose category has a target in the step: that target
  (``CategoryTarget``), run as if the plan had a step going to it;
- otherwise (unknown caller, no target for the category): the next step (``NextStep``).

Only callers with an E.164 number are looked up (``caller_to_look_up``): an internal
caller is an extension the CRM has no card for, an anonymous one has no number.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from vpbx_common.cdr import Direction
from vpbx_common.crm import CrmContact
from vpbx_common.e164 import is_e164
from vpbx_common.nodeconfig import (
    ConferenceTarget,
    ExternalTarget,
    GroupTarget,
    HangupTarget,
    IvrTarget,
    NodeConfig,
    RoutePlanTarget,
    Target,
    UnroutedTarget,
    UserEntry,
    UserTarget,
    VoicemailTarget,
    describe,
)
from vpbx_common.nodeconfig.steps import (
    ConferenceStep,
    CrmLookupStep,
    ForwardStep,
    GroupStep,
    HangupStep,
    IvrStep,
    RoutePlanStep,
    Step,
    UserStep,
    VoicemailStep,
)

from .actions import LookUpCaller
from .context import CallContext
from .env import RouterEnv


@dataclass(frozen=True, slots=True)
class ManagerChain:
    """Ring the contact's manager, then their groups, then everyone (per the step's times)."""

    contact: CrmContact
    manager: UserEntry
    groups: tuple[str, ...]  # names of the groups the manager is a member of, config order
    group_members: tuple[str, ...]  # their members, the manager included, no duplicates
    everyone: tuple[str, ...]  # every user of the config with an extension


@dataclass(frozen=True, slots=True)
class CategoryTarget:
    contact: CrmContact
    target: Target  # never unrouted (that one is a NextStep)


@dataclass(frozen=True, slots=True)
class NextStep:
    why: str


CrmRoute = ManagerChain | CategoryTarget | NextStep


def caller_to_look_up(call: CallContext) -> tuple[str | None, str]:
    """The number to ask the CRM about, or None and why the caller is not looked up."""
    if call.direction is Direction.INTERNAL:
        return None, "internal caller: not looked up"
    if not is_e164(call.caller):
        return None, "caller has no phone number: not looked up"
    return call.caller, ""


def route_by_contact(step: CrmLookupStep, contact: CrmContact, config: NodeConfig) -> CrmRoute:
    """Where a known caller goes; the route's detail text comes from ``describe_route``."""
    owner = contact.owner_user_id
    manager = _user_by_id(config, owner) if owner and step.to_responsible_manager else None
    if manager is not None:
        groups = tuple(g.name for g in config.groups if manager.extension in g.members)
        members = [m for g in config.groups if g.name in groups for m in g.members]
        return ManagerChain(
            contact=contact,
            manager=manager,
            groups=groups,
            group_members=tuple(dict.fromkeys(members)),
            everyone=tuple(dict.fromkeys(u.extension for u in config.users if u.extension)),
        )
    # The owner is not someone this config can ring (left the company, another tenant's
    # id): the contact still routes by its category.
    unknown_owner = (
        f"owner {owner} is no user here; " if owner and step.to_responsible_manager else ""
    )
    target = step.categories.get(contact.category)
    if target is None:
        return NextStep(
            f"contact {contact.id} {unknown_owner}category {contact.category}: no target"
        )
    if isinstance(target, UnroutedTarget):
        missing = target.missing or "its target"
        return NextStep(
            f"contact {contact.id} {unknown_owner}category {contact.category}: "
            f"{missing} no longer exists"
        )
    return CategoryTarget(contact, target)


def describe_route(route: ManagerChain | CategoryTarget) -> str:
    """The route entry's detail for a contact that routes somewhere."""
    match route:
        case ManagerChain(contact=contact, manager=manager):
            return f"contact {contact.id} owner {manager.extension}"
        case CategoryTarget(contact=contact, target=target):
            return f"contact {contact.id} category {contact.category}: {describe(target)}"


def _user_by_id(config: NodeConfig, user_id: str) -> UserEntry | None:
    wanted = _canonical_id(user_id)
    return next(
        (u for u in config.users if u.id and u.extension and _canonical_id(u.id) == wanted),
        None,
    )


def _canonical_id(ident: str) -> str:
    """User ids are UUIDs; the CRM may spell one in capitals or without dashes."""
    try:
        return str(uuid.UUID(ident))
    except ValueError:
        return ident


def step_to(target: Target) -> Step:
    """The plan step going to ``target``: a group or user nobody answers goes on with the
    plan's next step, exactly as those steps do when the plan names them itself."""
    match target:
        case UserTarget():
            return UserStep(target=target)
        case GroupTarget():
            return GroupStep(target=target)
        case IvrTarget():
            return IvrStep(target=target)
        case RoutePlanTarget():
            return RoutePlanStep(target=target)
        case VoicemailTarget():
            return VoicemailStep(target=target)
        case ConferenceTarget():
            return ConferenceStep(target=target)
        case ExternalTarget(number=number):
            return ForwardStep(number=number)
        case HangupTarget(reason=reason):
            return HangupStep(reason=reason)
        case UnroutedTarget(missing=missing):
            # route_by_contact never picks one; a step on it is skipped with the reason.
            return GroupStep(target=UnroutedTarget(missing=missing))


class LookupState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"
    ANSWERED = "answered"  # ``contact`` holds the answer (None: unknown caller)
    FAILED = "failed"  # ``failure`` says why


class CrmLookupSession:
    """Waits for the CRM's answer about the caller, at most ``timeout_ms``."""

    def __init__(
        self, step: CrmLookupStep, phone: str, timeout_ms: int, subject: str, env: RouterEnv
    ) -> None:
        self.step = step
        self.phone = phone
        self.timeout_ms = timeout_ms
        self.subject = subject
        self.env = env
        self.state = LookupState.IDLE
        self.contact: CrmContact | None = None
        self.failure = ""
        self._deadline = 0.0

    @property
    def deadline(self) -> float | None:
        return self._deadline if self.state is LookupState.WAITING else None

    @property
    def done(self) -> bool:
        return self.state in (LookupState.ANSWERED, LookupState.FAILED)

    def start(self, now: float) -> None:
        self.env.out.act(LookUpCaller(self.phone, self.timeout_ms))
        self.state = LookupState.WAITING
        self._deadline = now + self.timeout_ms / 1000

    def on_reply(self, contact: CrmContact | None, now: float) -> None:
        if self.state is LookupState.WAITING:
            self.contact = contact
            self.state = LookupState.ANSWERED

    def on_failed(self, reason: str, now: float) -> None:
        if self.state is LookupState.WAITING:
            self._fail(reason)

    def on_timer(self, now: float) -> None:
        if self.state is LookupState.WAITING and now >= self._deadline:
            self._fail(f"timeout after {self.timeout_ms} ms")

    def stop(self) -> None:
        if self.state is LookupState.WAITING:
            self._fail("stopped")

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.state = LookupState.FAILED
