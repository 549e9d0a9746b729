"""A tenant's numbers: Number resources in the number store, taken from the platform's pool.

The store (Kubernetes or the local manifest file) holds the Numbers; the
database holds the pool and which tenant has each pooled number. Every change
writes both inside one database transaction: the store write happens before
the commit, and a failed store write rolls the pool change back, so a number
is never half provisioned or half released.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.manifests import PLATFORM_API_VERSION, Number, NumberSpec

from ..auth.principal import Principal
from ..errors import InvalidInput, NotFound, PlanLimitReached, PreconditionFailed
from ..ivr.repository import PromptRepository
from ..ivr.schemas import MenuPrompt, SpokenPrompt
from ..ivr.service import check_prompt, prompt_document
from ..ivr.speech import SpeechEngine
from ..nodeconfig.publisher import ConfigPublisher
from ..paging import PageParams, check_if_match
from ..targets import check_target
from ..tenants.models import TenantRow
from .errors import NoNumberAvailable, NumberAlreadyExists, NumberNotFound, NumberStoreUnavailable
from .models import NumberGreetingRow
from .pool import PoolRepository
from .schemas import NumberProvision, NumberUpdate, stored_entry
from .store import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TENANT_LABEL,
    NumberExistsError,
    NumberStore,
    NumberStoreError,
    NumberVersionConflictError,
)

logger = logging.getLogger(__name__)

_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# Without If-Match an update overwrites; a write racing it is retried this often.
UPDATE_ATTEMPTS = 3


ResultT = TypeVar("ResultT")

_MENU_PROMPT = TypeAdapter[MenuPrompt](MenuPrompt)


async def store_read(call: Awaitable[ResultT]) -> ResultT:
    """A store read; an unreachable store is a 503 naming the cause."""
    try:
        return await call
    except NumberStoreError as exc:
        raise NumberStoreUnavailable(f"the number store is unavailable: {exc}") from exc


def number_name(tenant: str, number: str) -> str:
    """The Number resource's name: ``acme-74950000001``."""
    return f"{tenant}-{number.removeprefix('+')}"


def number_etag(number: Number) -> str:
    return f'"{number.metadata.resource_version or ""}"'


class NumberService:
    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        store: NumberStore,
        publisher: ConfigPublisher,
        speech: SpeechEngine,
    ) -> None:
        self.session = session
        self.tenant = principal.tenant
        self.store = store
        self.publisher = publisher
        self.speech = speech
        self.pool = PoolRepository(session)
        self.prompts = PromptRepository(session, principal.tenant)

    # --- reads ------------------------------------------------------------------

    async def list(
        self, params: PageParams, city: str | None, label: str | None
    ) -> tuple[list[Number], int]:
        numbers = [
            n
            for n in await store_read(self.store.list_numbers(self.tenant))
            if (city is None or n.spec.city == city) and (label is None or n.spec.label == label)
        ]
        return numbers[params.offset : params.offset + params.limit], len(numbers)

    async def get(self, number_id: str) -> Number:
        if not _RESOURCE_NAME.fullmatch(number_id):
            raise NumberNotFound()
        number = await store_read(self.store.get_number(number_id))
        # Another tenant's number is indistinguishable from a missing one.
        if number is None or number.spec.tenant != self.tenant:
            raise NumberNotFound()
        return number

    async def greetings(self, numbers: Sequence[Number]) -> dict[str, MenuPrompt]:
        """E.164 -> the greeting as read back (rendered speech as ``tts`` with its text)."""
        wanted = [number.spec.number for number in numbers]
        if not wanted:
            return {}
        rows = await self.session.scalars(
            select(NumberGreetingRow).where(
                NumberGreetingRow.tenant_id == self.tenant, NumberGreetingRow.number.in_(wanted)
            )
        )
        stored = {row.number: row.greeting for row in rows}
        spoken_ids = {
            uuid.UUID(str(doc["prompt_id"]))
            for doc in stored.values()
            if doc.get("kind") == "audio" and doc.get("prompt_id")
        }
        texts = await self.prompts.texts(spoken_ids)
        result: dict[str, MenuPrompt] = {}
        for number, doc in stored.items():
            prompt_id = doc.get("prompt_id")
            spoken = texts.get(uuid.UUID(str(prompt_id))) if prompt_id else None
            if spoken is not None:
                text, language = spoken
                result[number] = SpokenPrompt(
                    text=text, language=language, prompt_id=uuid.UUID(str(prompt_id))
                )
                continue
            try:
                result[number] = _MENU_PROMPT.validate_python(doc)
            except ValidationError:
                logger.warning("tenant=%s greeting of %s unreadable: %r", self.tenant, number, doc)
        return result

    # --- provisioning -----------------------------------------------------------

    async def provision(self, body: NumberProvision) -> Number:
        if body.pattern is not None and body.number is not None:
            raise InvalidInput.at("body.pattern", "give a pattern or a specific number, not both")
        tenant = await self._locked_tenant()
        if body.number is not None:
            city = await self._city_of_requested(body.number, body.city, tenant)
        elif body.city is None:
            raise InvalidInput.at("body.city", "required unless a specific number is requested")
        elif body.city not in tenant.cities:
            raise InvalidInput.at("body.city", f"not one of the tenant's cities {tenant.cities}")
        else:
            city = body.city
        await check_target(self.session, self.tenant, body.entry, "body.entry")
        await self._check_plan_limit(tenant)

        claimed = await self.pool.claim(
            self.tenant, city=city, pattern=body.pattern, number=body.number
        )
        if claimed is None:
            await self.session.rollback()
            raise self._nothing_free(body)
        number = Number.model_validate(
            {
                "apiVersion": PLATFORM_API_VERSION,
                "kind": "Number",
                "metadata": {
                    "name": number_name(self.tenant, claimed),
                    "labels": {TENANT_LABEL: self.tenant, MANAGED_BY_LABEL: MANAGED_BY},
                },
                "spec": {
                    "number": claimed,
                    "tenant": self.tenant,
                    "city": city,
                    "channels": body.channels,
                    "record": body.record,
                    "label": body.label,
                    "entry": stored_entry(body.entry),
                },
            }
        )
        try:
            created = await self.store.create_number(number)
        except NumberExistsError as exc:
            await self.session.rollback()
            raise NumberAlreadyExists(
                f"a Number named {number.name} already exists; {claimed} stays in the pool"
            ) from exc
        except NumberStoreError as exc:
            await self.session.rollback()
            logger.warning("tenant=%s provisioning %s failed: %s", self.tenant, claimed, exc)
            raise NumberStoreUnavailable(f"the number was not provisioned: {exc}") from exc
        try:
            await self.session.commit()
        except Exception:
            # The pool does not record the number as taken: take the Number back.
            await self.session.rollback()
            await self._forget(number.name)
            raise
        logger.info("tenant=%s provisioned %s as %s", self.tenant, claimed, number.name)
        await self.publisher.changed(self.tenant)
        return created

    async def _locked_tenant(self) -> TenantRow:
        """The caller's tenant row, locked: one tenant's provisions run one at a time, so
        the plan limit holds under concurrency (PostgreSQL; SQLite ignores the lock)."""
        tenant = await self.session.scalar(
            select(TenantRow).where(TenantRow.id == self.tenant).with_for_update(key_share=True)
        )
        if tenant is None:
            raise NotFound("tenant not found")
        return tenant

    async def _check_plan_limit(self, tenant: TenantRow) -> None:
        if tenant.numbers <= 0:
            return
        held = len(await store_read(self.store.list_numbers(self.tenant)))
        if held >= tenant.numbers:
            raise PlanLimitReached(
                f"the tenant's plan allows {tenant.numbers} numbers and it has {held};"
                " release one or ask the platform operator for a bigger plan"
            )

    async def _city_of_requested(self, number: str, city: str | None, tenant: TenantRow) -> str:
        row = await self.pool.find(number)
        if row is None:
            raise NoNumberAvailable(f"{number} is not in the platform's pool", "body.number")
        if row.tenant_id is not None:
            raise NoNumberAvailable(f"{number} is already taken", "body.number")
        if city is not None and row.city != city:
            raise NoNumberAvailable(f"{number} is in city {row.city}, not {city}", "body.number")
        if row.city not in tenant.cities:
            raise InvalidInput.at(
                "body.number", f"{number} is in city {row.city}, which the tenant does not use"
            )
        return row.city

    @staticmethod
    def _nothing_free(body: NumberProvision) -> NoNumberAvailable:
        if body.number is not None:
            return NoNumberAvailable(f"{body.number} is already taken", "body.number")
        if body.pattern is not None:
            return NoNumberAvailable(
                f"no free number in {body.city} matches {body.pattern}", "body.pattern"
            )
        return NoNumberAvailable(f"no free number in {body.city}", "body.city")

    # --- changes ----------------------------------------------------------------

    async def update(self, number_id: str, body: NumberUpdate, if_match: str | None) -> Number:
        greeting: dict[str, Any] | None = None
        greeting_changed = "greeting" in body.model_fields_set
        if greeting_changed and body.greeting is not None:
            await check_prompt(self.prompts, self.speech, body.greeting, "body.greeting")
        changes: dict[str, object] = {}
        if "entry" in body.model_fields_set:
            await check_target(self.session, self.tenant, body.entry, "body.entry")
            changes["entry"] = stored_entry(body.entry)
        if "label" in body.model_fields_set:
            changes["label"] = body.label
        if body.channels is not None:
            changes["channels"] = body.channels
        if greeting_changed and body.greeting is not None:
            # Rendered (speech) before anything is written: a 422 or 503 changes nothing.
            greeting = await prompt_document(
                self.prompts, self.speech, body.greeting, None, "body.greeting"
            )
        if "record" in body.model_fields_set:
            changes["record"] = body.record  # null: back to the tenant's policy
        attempt = 0
        while True:
            attempt += 1
            number = await self.get(number_id)
            check_if_match(if_match, number_etag(number))
            if not changes:
                # The greeting lives in the database only: the Number resource stays as it is.
                await self._set_greeting(number, greeting_changed, greeting)
                return number
            spec = NumberSpec.model_validate(
                {**number.spec.model_dump(by_alias=True, exclude_none=True), **changes}
            )
            try:
                updated = await self.store.replace_number(number.model_copy(update={"spec": spec}))
            except NumberVersionConflictError as exc:
                if if_match is not None or attempt >= UPDATE_ATTEMPTS:
                    raise PreconditionFailed("the number changed since it was read") from exc
                continue
            except NumberStoreError as exc:
                await self.session.rollback()
                raise NumberStoreUnavailable(f"the number was not changed: {exc}") from exc
            await self._set_greeting(updated, greeting_changed, greeting)
            return updated

    async def _set_greeting(
        self, number: Number, changed: bool, greeting: dict[str, Any] | None
    ) -> None:
        """Store (or with None remove) the number's greeting, then tell the nodes."""
        if changed:
            e164 = number.spec.number
            row = await self.session.get(NumberGreetingRow, (self.tenant, e164))
            if greeting is None and row is not None:
                await self.session.delete(row)
            elif greeting is not None and row is None:
                self.session.add(
                    NumberGreetingRow(tenant_id=self.tenant, number=e164, greeting=greeting)
                )
            elif greeting is not None and row is not None:
                row.greeting = greeting
            await self.session.flush()
            await self.prompts.prune()
            await self.session.commit()
        await self.publisher.changed(self.tenant)

    async def release(self, number_id: str, if_match: str | None) -> None:
        number = await self.get(number_id)
        check_if_match(if_match, number_etag(number))
        await self.pool.release(number.spec.number, number.spec.city)
        await self.session.execute(
            delete(NumberGreetingRow).where(
                NumberGreetingRow.tenant_id == self.tenant,
                NumberGreetingRow.number == number.spec.number,
            )
        )
        try:
            await self.store.delete_number(number.name)
        except NumberStoreError as exc:
            await self.session.rollback()
            raise NumberStoreUnavailable(f"the number was not released: {exc}") from exc
        await self.session.commit()
        logger.info("tenant=%s released %s (%s)", self.tenant, number.spec.number, number.name)
        await self.publisher.changed(self.tenant)

    async def _forget(self, name: str) -> None:
        try:
            await self.store.delete_number(name)
        except NumberStoreError as exc:
            logger.error(
                "tenant=%s Number %s left without a pool record: %s", self.tenant, name, exc
            )
