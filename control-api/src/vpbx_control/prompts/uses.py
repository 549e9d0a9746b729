"""Which of a tenant's objects play which prompts.

A prompt is named by ``prompt_id`` inside stored JSON documents: an IVR menu's
``prompt``, a number's greeting, a route plan's queue ``music`` (in any branch),
a user's ``settings.voicemail_greeting``. One scan answers both who keeps a
prompt alive (the clean-up of prompts nothing plays) and who stops a tenant from
deleting one (409 naming them); the documents of one tenant are few.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..ivr.models import IvrMenuRow
from ..numbers.models import NumberGreetingRow
from ..routeplans.models import RoutePlanRow
from ..users.models import UserRow


def prompt_ids(document: object) -> Iterator[str]:
    """Every ``prompt_id`` in a stored JSON document, however deep."""
    if isinstance(document, Mapping):
        for key, value in document.items():
            if key == "prompt_id" and value is not None:
                yield str(value)
            else:
                yield from prompt_ids(value)
    elif isinstance(document, list):
        for item in document:
            yield from prompt_ids(item)


async def prompt_users(session: AsyncSession, tenant_id: str) -> dict[str, list[str]]:
    """Prompt id -> what plays it, named for a person reading a 409."""
    found: defaultdict[str, list[str]] = defaultdict(list)

    def note(document: object, user: str) -> None:
        for prompt_id in dict.fromkeys(prompt_ids(document)):
            found[prompt_id].append(user)

    menus = await session.execute(
        select(IvrMenuRow.name, IvrMenuRow.prompt).where(IvrMenuRow.tenant_id == tenant_id)
    )
    for name, prompt in menus:
        note(prompt, f"IVR menu {name!r}")
    greetings = await session.execute(
        select(NumberGreetingRow.number, NumberGreetingRow.greeting).where(
            NumberGreetingRow.tenant_id == tenant_id
        )
    )
    for number, greeting in greetings:
        note(greeting, f"the greeting of number {number}")
    plans = await session.execute(
        select(RoutePlanRow.name, RoutePlanRow.steps).where(RoutePlanRow.tenant_id == tenant_id)
    )
    for name, steps in plans:
        note(steps, f"the queue music of route plan {name!r}")
    users = await session.execute(
        select(UserRow.name, UserRow.extension, UserRow.settings).where(
            UserRow.tenant_id == tenant_id
        )
    )
    for name, extension, settings in users:
        greeting = (settings or {}).get("voicemail_greeting")
        who = f"{name} ({extension})" if extension else name
        note(greeting, f"the voicemail greeting of {who}")
    return dict(found)
