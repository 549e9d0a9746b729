"""Deals: create, read, search, move through stages (each step in the deal's history),
delete; the pipeline's board.

A deal's status is its stage's kind. Entering a won or lost stage closes it (``closed_at``),
entering an open one reopens it; a lost deal says why (``loss_reason``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from vpbx_control.db.base import utcnow
from vpbx_control.paging import PageParams, fetch_page

from ..analytics.outbox import outbox_row
from ..companies.models import CompanyRow
from ..companies.repository import Companies
from ..contacts.models import ContactRow
from ..contacts.repository import Contacts
from ..db.base import folded
from ..errors import Conflict, InvalidInput
from ..identity import Caller, IdentityClient
from ..ownership import check_owner
from ..pipelines.service import PipelineService
from .models import DealEventKind, DealEventRow, DealRow, PipelineRow, StageKind, StageRow
from .repository import Deals, Stages
from .schemas import Board, BoardStage, Deal, DealCreate, DealEvent, DealUpdate

_CENT = Decimal("0.01")


def event_kind(before: StageKind, after: StageKind) -> DealEventKind:
    """The history's name for a step from a stage of one kind to a stage of another."""
    if after is before:
        return DealEventKind.MOVED
    if after is StageKind.WON:
        return DealEventKind.WON
    if after is StageKind.LOST:
        return DealEventKind.LOST
    return DealEventKind.REOPENED


def loss_reason(kind: StageKind, given: str | None, current: str) -> str:
    """The loss reason a deal in a stage of ``kind`` keeps; 422 naming ``body.loss_reason``."""
    if kind is StageKind.LOST:
        reason = current if given is None else given
        if not reason:
            raise InvalidInput.at("body.loss_reason", "required when the deal is lost")
        return reason
    if given:
        raise InvalidInput.at("body.loss_reason", "only a lost deal has a loss reason")
    return ""


class DealService:
    def __init__(
        self,
        session: AsyncSession,
        caller: Caller,
        identity: IdentityClient,
        *,
        outbox: bool = False,
    ) -> None:
        self.session = session
        self.caller = caller
        self.identity = identity
        # True when an analytics store is configured: every step also goes to the outbox
        # the shipper empties into it (analytics/shipper.py), in the same transaction.
        self.outbox = outbox
        self.deals = Deals(session, caller.tenant)
        self.stages = Stages(session, caller.tenant)
        self.pipelines = PipelineService(session, caller)
        # False: the writes are flushed, not committed, as one step of a larger change
        # (the after-call result) that commits or rolls back as a whole.
        self.autocommit = True

    # --- reads --------------------------------------------------------------------

    async def view(self, row: DealRow) -> Deal:
        return (await self.views([row]))[0]

    async def views(self, rows: Sequence[DealRow]) -> list[Deal]:
        stage_ids = {row.stage_id for row in rows}
        kinds: dict[uuid.UUID, StageKind] = {}
        if stage_ids:
            found = await self.session.execute(
                self.stages.scoped()
                .with_only_columns(StageRow.id, StageRow.kind)
                .where(StageRow.id.in_(stage_ids))
            )
            kinds = {stage_id: kind for stage_id, kind in found}
        named = await self._named(rows)
        return [named(_deal(row, kinds[row.stage_id])) for row in rows]

    async def _named(self, rows: Sequence[DealRow]) -> Callable[[Deal], Deal]:
        """Fills in the deals' contact and company names: one read of each for all the
        rows (a board or a page), not one per deal."""
        contact_ids = {row.contact_id for row in rows if row.contact_id}
        company_ids = {row.company_id for row in rows if row.company_id}
        contacts: dict[uuid.UUID, str] = {}
        companies: dict[uuid.UUID, str] = {}
        tenant = self.caller.tenant
        if contact_ids:
            found = await self.session.execute(
                select(ContactRow.id, ContactRow.name).where(
                    ContactRow.tenant_id == tenant, ContactRow.id.in_(contact_ids)
                )
            )
            contacts = {row_id: name for row_id, name in found}
        if company_ids:
            found = await self.session.execute(
                select(CompanyRow.id, CompanyRow.name).where(
                    CompanyRow.tenant_id == tenant, CompanyRow.id.in_(company_ids)
                )
            )
            companies = {row_id: name for row_id, name in found}

        def named(deal: Deal) -> Deal:
            if deal.contact_id is not None:
                deal.contact_name = contacts.get(deal.contact_id)
            if deal.company_id is not None:
                deal.company_name = companies.get(deal.company_id)
            return deal

        return named

    def search(
        self,
        *,
        pipeline_id: uuid.UUID | None = None,
        stage_id: uuid.UUID | None = None,
        contact_id: uuid.UUID | None = None,
        company_id: uuid.UUID | None = None,
        owner_user_id: uuid.UUID | None = None,
        status: StageKind | None = None,
        text: str | None = None,
    ) -> Select[tuple[DealRow]]:
        query = self.deals.scoped()
        if pipeline_id is not None:
            query = query.where(DealRow.pipeline_id == pipeline_id)
        if stage_id is not None:
            query = query.where(DealRow.stage_id == stage_id)
        if contact_id is not None:
            query = query.where(DealRow.contact_id == contact_id)
        if company_id is not None:
            query = query.where(DealRow.company_id == company_id)
        if owner_user_id is not None:
            query = query.where(DealRow.owner_user_id == owner_user_id)
        if status is not None:
            of_kind = self.stages.scoped().with_only_columns(StageRow.id)
            query = query.where(DealRow.stage_id.in_(of_kind.where(StageRow.kind == status)))
        if text:
            query = query.where(DealRow.search_text.contains(folded(text)))
        return query.order_by(DealRow.created_at.desc(), DealRow.id)

    async def page(
        self, query: Select[tuple[DealRow]], params: PageParams
    ) -> tuple[list[Deal], int]:
        rows, total = await self.deals.page(query, params)
        return await self.views(rows), total

    async def history(self, row: DealRow, params: PageParams) -> tuple[list[DealEvent], int]:
        # Events carry no revision (they never change), so they are not a Scoped model;
        # scoped by hand, like a contact's phones.
        query = (
            select(DealEventRow)
            .where(DealEventRow.tenant_id == self.caller.tenant, DealEventRow.deal_id == row.id)
            .order_by(DealEventRow.at, DealEventRow.id)
        )
        events, total = await fetch_page(self.session, query, params)
        return [_event(event) for event in events], total

    async def board(
        self, pipeline: PipelineRow, per_stage: int, owner_user_id: uuid.UUID | None
    ) -> Board:
        stages = (await self.pipelines.stages_of([pipeline.id]))[pipeline.id]
        deals = self.search(pipeline_id=pipeline.id, owner_user_id=owner_user_id).order_by(None)
        counts: dict[uuid.UUID, int] = {}
        found = await self.session.execute(
            deals.with_only_columns(DealRow.stage_id, func.count()).group_by(DealRow.stage_id)
        )
        for stage_id, count in found:
            counts[stage_id] = count
        totals: dict[uuid.UUID, dict[str, Decimal]] = {stage.id: {} for stage in stages}
        found_totals = await self.session.execute(
            deals.where(DealRow.amount.is_not(None))
            .with_only_columns(DealRow.stage_id, DealRow.currency, func.sum(DealRow.amount))
            .group_by(DealRow.stage_id, DealRow.currency)
            .order_by(DealRow.currency)
        )
        for stage_id, currency, total in found_totals:
            if total is not None:
                totals[stage_id][currency] = Decimal(total).quantize(_CENT)
        # The newest deals of every stage in one query: number them within their stage.
        place = (
            func.row_number()
            .over(
                partition_by=DealRow.stage_id,
                order_by=(DealRow.created_at.desc(), DealRow.id),
            )
            .label("place")
        )
        ranked = deals.add_columns(place).subquery()
        deal = aliased(DealRow, ranked)
        rows = await self.session.scalars(
            select(deal).where(ranked.c.place <= per_stage).order_by(ranked.c.place)
        )
        kinds = {stage.id: stage.kind for stage in stages}
        listed: dict[uuid.UUID, list[Deal]] = {stage.id: [] for stage in stages}
        shown = list(rows)
        named = await self._named(shown)
        for row in shown:
            listed[row.stage_id].append(named(_deal(row, kinds[row.stage_id])))
        return Board(
            pipeline_id=pipeline.id,
            name=pipeline.name,
            stages=[
                BoardStage(
                    id=stage.id,
                    name=stage.name,
                    kind=stage.kind,
                    position=stage.position,
                    count=counts.get(stage.id, 0),
                    totals=totals[stage.id],
                    deals=listed[stage.id],
                )
                for stage in stages
            ],
        )

    # --- writes -------------------------------------------------------------------

    async def create(self, body: DealCreate) -> DealRow:
        given = body.model_fields_set
        pipeline_id, stage = await self._placement(body.pipeline_id, body.stage_id, None)
        company_id = body.company_id
        source_label = body.source_label
        if body.contact_id is not None:
            contact = await Contacts(self.session, self.caller.tenant).referenced(
                body.contact_id, "body.contact_id"
            )
            # The deal is with the contact's company and came by the contact's ad channel,
            # unless the body says otherwise.
            if "company_id" not in given:
                company_id = contact.company_id
            if "source_label" not in given:
                source_label = contact.source_label
        if "company_id" in given and company_id is not None:
            await Companies(self.session, self.caller.tenant).referenced(
                company_id, "body.company_id"
            )
        if "owner_user_id" in given:
            owner = body.owner_user_id
            if owner is not None:
                await check_owner(self.identity, self.caller, owner, None, "body.owner_user_id")
        else:
            owner = self.caller.user_id
        reason = loss_reason(stage.kind, body.loss_reason, "")
        now = utcnow()
        row = self.deals.add(
            DealRow(
                id=uuid.uuid4(),
                title=body.title,
                pipeline_id=pipeline_id,
                stage_id=stage.id,
                contact_id=body.contact_id,
                company_id=company_id,
                amount=body.amount,
                currency=body.currency,
                owner_user_id=owner,
                loss_reason=reason,
                source_label=source_label,
                closed_at=None if stage.kind is StageKind.OPEN else now,
                custom=dict(body.custom),
                revision=1,
            )
        )
        await self.session.flush()
        await self._record(row, DealEventKind.CREATED, None, stage.id, now)
        await self._commit()
        return row

    async def update(self, row: DealRow, body: DealUpdate) -> DealRow:
        given = body.model_fields_set
        moving = ("pipeline_id" in given and body.pipeline_id not in (None, row.pipeline_id)) or (
            "stage_id" in given and body.stage_id not in (None, row.stage_id)
        )
        current = await self.stages.get(row.stage_id)
        target = current
        if moving:
            _, target = await self._placement(body.pipeline_id, body.stage_id, row.pipeline_id)
        if "contact_id" in given and body.contact_id is not None:
            await Contacts(self.session, self.caller.tenant).referenced(
                body.contact_id, "body.contact_id"
            )
        if "company_id" in given and body.company_id is not None:
            await Companies(self.session, self.caller.tenant).referenced(
                body.company_id, "body.company_id"
            )
        if "owner_user_id" in given and body.owner_user_id != row.owner_user_id:
            await check_owner(
                self.identity,
                self.caller,
                body.owner_user_id,
                row.owner_user_id,
                "body.owner_user_id",
            )
            row.owner_user_id = body.owner_user_id
        row.loss_reason = loss_reason(
            target.kind,
            body.loss_reason if "loss_reason" in given else None,
            row.loss_reason if current.kind is StageKind.LOST else "",
        )
        if "contact_id" in given:
            row.contact_id = body.contact_id
        if "company_id" in given:
            row.company_id = body.company_id
        if "amount" in given:
            row.amount = body.amount
        for name in ("title", "currency", "source_label"):
            value = getattr(body, name)
            if name in given and value is not None:
                setattr(row, name, value)
        if "custom" in given and body.custom is not None:
            row.custom = dict(body.custom)
        if target.id != current.id:
            now = utcnow()
            row.pipeline_id, row.stage_id = target.pipeline_id, target.id
            if target.kind is StageKind.OPEN:
                row.closed_at = None
            elif target.kind is not current.kind:
                row.closed_at = now
            await self._record(
                row, event_kind(current.kind, target.kind), current.id, target.id, now
            )
        self.deals.touch(row)
        await self._commit()
        return row

    async def delete(self, row: DealRow) -> None:
        """Its history and notes go with it; its tasks stay, without the deal."""
        await self.session.delete(row)
        await self._commit()

    # --- helpers ------------------------------------------------------------------

    async def _placement(
        self,
        pipeline_id: uuid.UUID | None,
        stage_id: uuid.UUID | None,
        current_pipeline_id: uuid.UUID | None,
    ) -> tuple[uuid.UUID, StageRow]:
        """The pipeline and stage a deal goes to: the given ones, else the deal's own
        pipeline (or the tenant's first) and its first open stage."""
        if pipeline_id is not None:
            pipeline = await self.pipelines.pipelines.referenced(pipeline_id, "body.pipeline_id")
        elif current_pipeline_id is not None:
            pipeline = await self.pipelines.pipelines.get(current_pipeline_id)
        else:
            pipeline = await self.pipelines.first()
        if stage_id is not None:
            stage = await self.stages.referenced(stage_id, "body.stage_id")
            if stage.pipeline_id != pipeline.id:
                raise InvalidInput.at(
                    "body.stage_id", f"not a stage of the pipeline {pipeline.name!r}"
                )
            return pipeline.id, stage
        first_open = await self.stages.first(
            self.stages.scoped()
            .where(StageRow.pipeline_id == pipeline.id, StageRow.kind == StageKind.OPEN)
            .order_by(StageRow.position, StageRow.id)
        )
        if first_open is None:
            # The stage rules keep an open stage in every pipeline; only a concurrent edit
            # of the pipeline could get here.
            raise Conflict("the pipeline has no open stage; read it again")
        return pipeline.id, first_open

    async def _record(
        self,
        row: DealRow,
        kind: DealEventKind,
        from_stage: uuid.UUID | None,
        to_stage: uuid.UUID,
        at: dt.datetime,
    ) -> None:
        event = DealEventRow(
            id=uuid.uuid4(),
            tenant_id=self.caller.tenant,
            deal_id=row.id,
            kind=kind,
            from_stage_id=from_stage,
            to_stage_id=to_stage,
            amount=row.amount,
            user_id=self.caller.user_id,
            at=at,
        )
        self.session.add(event)
        if self.outbox:
            label = row.source_label or await self._contact_label(row.contact_id)
            self.session.add(outbox_row(event, row, label))

    async def _contact_label(self, contact_id: uuid.UUID | None) -> str:
        """The ad channel of a deal that names none: its contact's, as the step happens."""
        if contact_id is None:
            return ""
        label = await self.session.scalar(
            select(ContactRow.source_label).where(
                ContactRow.tenant_id == self.caller.tenant, ContactRow.id == contact_id
            )
        )
        return label or ""

    async def _commit(self) -> None:
        if not self.autocommit:
            await self.session.flush()
            return
        try:
            await self.session.commit()
        except IntegrityError as exc:
            # A stage, contact or company named in the body was deleted meanwhile: the
            # foreign keys refuse the row.
            await self.session.rollback()
            raise Conflict("something the deal names was deleted meanwhile; retry") from exc


def _amount(value: Decimal | None) -> Decimal | None:
    # Always two decimals in answers ("1500.00"), whatever the request or database gave.
    return None if value is None else value.quantize(_CENT)


def _deal(row: DealRow, kind: StageKind) -> Deal:
    return Deal(
        id=row.id,
        title=row.title,
        pipeline_id=row.pipeline_id,
        stage_id=row.stage_id,
        status=kind,
        contact_id=row.contact_id,
        company_id=row.company_id,
        amount=_amount(row.amount),
        currency=row.currency,
        owner_user_id=row.owner_user_id,
        loss_reason=row.loss_reason,
        source_label=row.source_label,
        closed_at=row.closed_at,
        custom=dict(row.custom),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _event(row: DealEventRow) -> DealEvent:
    return DealEvent(
        id=row.id,
        kind=row.kind,
        from_stage_id=row.from_stage_id,
        to_stage_id=row.to_stage_id,
        amount=_amount(row.amount),
        user_id=row.user_id,
        at=row.at,
    )
