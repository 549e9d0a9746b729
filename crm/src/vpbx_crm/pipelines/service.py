"""Pipelines and their stages: the default one, the stage rules, replacing the stage list.

A stage deals sit in is never removed and never changes its kind (that would win or lose
the deals with no event in their history): 409 ``stage-in-use`` until they are moved.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.errors import FieldProblem
from vpbx_control.paging import PageParams

from ..deals.models import DealRow, PipelineRow, StageKind, StageRow
from ..deals.repository import Deals, Pipelines, Stages
from ..errors import (
    Conflict,
    InvalidInput,
    PipelineInUse,
    PipelineNameTaken,
    ReferenceNotFound,
    StageInUse,
)
from ..identity import Caller
from .schemas import Pipeline, PipelineCreate, PipelineUpdate, Stage, StageInput

DEFAULT_PIPELINE = "Sales"
DEFAULT_STAGES = (
    ("New", StageKind.OPEN),
    ("Qualified", StageKind.OPEN),
    ("Proposal", StageKind.OPEN),
    ("Negotiation", StageKind.OPEN),
    ("Won", StageKind.WON),
    ("Lost", StageKind.LOST),
)
# The default pipeline's ids are derived from the tenant: two first requests at once insert
# the same primary keys, so one of them fails instead of the tenant getting two "Sales".
_DEFAULT_IDS = uuid.UUID("5b0c62c4-55a1-4b43-9a8e-2f1d7f0e6a11")
# The tenant's pipelines in order; the first takes the deals that name none.
_IN_ORDER = (PipelineRow.position, PipelineRow.created_at, PipelineRow.id)


def ordered_stages(stages: Sequence[StageInput], field: str) -> list[tuple[int, StageInput]]:
    """The stages in their final order, each with its index in the request (for naming
    fields); 422 for a list breaking the rules."""
    indexed = list(enumerate(stages))
    with_position = [index for index, stage in indexed if stage.position is not None]
    if with_position and len(with_position) != len(indexed):
        missing = next(index for index, stage in indexed if stage.position is None)
        raise InvalidInput.at(
            f"{field}[{missing}].position", "give every stage a position, or none"
        )
    if with_position:
        seen_positions: set[int] = set()
        for index, stage in indexed:
            if stage.position in seen_positions:
                raise InvalidInput.at(f"{field}[{index}].position", "used by another stage")
            seen_positions.add(stage.position or 0)
        indexed.sort(key=lambda item: item[1].position or 0)
    names: set[str] = set()
    ids: set[uuid.UUID] = set()
    for index, stage in indexed:
        if stage.name.casefold() in names:
            raise InvalidInput.at(f"{field}[{index}].name", f"{stage.name!r} is listed twice")
        names.add(stage.name.casefold())
        if stage.id is not None:
            if stage.id in ids:
                raise InvalidInput.at(f"{field}[{index}].id", "listed twice")
            ids.add(stage.id)
    kinds = [stage.kind for stage in stages]
    problems = []
    if StageKind.OPEN not in kinds:
        problems.append("at least one open stage")
    if kinds.count(StageKind.WON) != 1:
        problems.append("exactly one won stage")
    if StageKind.LOST not in kinds:
        problems.append("at least one lost stage")
    if problems:
        raise InvalidInput.at(field, "a pipeline needs " + ", ".join(problems))
    return indexed


class PipelineService:
    def __init__(self, session: AsyncSession, caller: Caller) -> None:
        self.session = session
        self.caller = caller
        self.pipelines = Pipelines(session, caller.tenant)
        self.stages = Stages(session, caller.tenant)
        self.deals = Deals(session, caller.tenant)

    # --- reads --------------------------------------------------------------------

    async def ensure_default(self) -> None:
        """A tenant with no pipeline gets the default one (on first read or first deal)."""
        any_pipeline = self.pipelines.scoped().with_only_columns(PipelineRow.id).limit(1)
        if await self.session.scalar(any_pipeline) is not None:
            return
        tenant = self.caller.tenant
        pipeline_id = uuid.uuid5(_DEFAULT_IDS, f"{tenant}/pipeline")
        # No flush before the commit: the pipeline's insert (first, by the foreign key) is
        # where a request racing another one for the default pipeline fails.
        self.pipelines.add(
            PipelineRow(id=pipeline_id, name=DEFAULT_PIPELINE, position=0, revision=1)
        )
        for position, (name, kind) in enumerate(DEFAULT_STAGES):
            self.stages.add(
                StageRow(
                    id=uuid.uuid5(_DEFAULT_IDS, f"{tenant}/stage/{name}"),
                    pipeline_id=pipeline_id,
                    name=name,
                    kind=kind,
                    position=position,
                    revision=1,
                )
            )
        try:
            await self.session.commit()
        except IntegrityError:
            # Another request created the default pipeline a moment ago (same ids): the
            # tenant has it now, which is all this was for.
            await self.session.rollback()

    async def first(self) -> PipelineRow:
        """The tenant's first pipeline (the default for new deals), created if none."""
        await self.ensure_default()
        row = await self.pipelines.first(self.pipelines.scoped().order_by(*_IN_ORDER))
        if row is None:
            # Only if every pipeline was deleted between the two statements above.
            raise Conflict("the tenant's pipelines changed meanwhile; retry")
        return row

    async def stages_of(self, pipeline_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[StageRow]]:
        stages: dict[uuid.UUID, list[StageRow]] = {pipeline_id: [] for pipeline_id in pipeline_ids}
        if not pipeline_ids:
            return stages
        rows = await self.stages.all(
            self.stages.scoped()
            .where(StageRow.pipeline_id.in_(pipeline_ids))
            .order_by(StageRow.position, StageRow.id)
        )
        for row in rows:
            stages[row.pipeline_id].append(row)
        return stages

    async def view(self, row: PipelineRow) -> Pipeline:
        return (await self.views([row]))[0]

    async def views(self, rows: Sequence[PipelineRow]) -> list[Pipeline]:
        stages = await self.stages_of([row.id for row in rows])
        return [_pipeline(row, stages[row.id]) for row in rows]

    async def page(self, params: PageParams) -> tuple[list[Pipeline], int]:
        await self.ensure_default()
        query = self.pipelines.scoped().order_by(*_IN_ORDER)
        rows, total = await self.pipelines.page(query, params)
        return await self.views(rows), total

    async def deal_counts(self, stage_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        counts = dict.fromkeys(stage_ids, 0)
        if not stage_ids:
            return counts
        rows = await self.session.execute(
            self.deals.scoped()
            .with_only_columns(DealRow.stage_id, func.count())
            .where(DealRow.stage_id.in_(stage_ids))
            .group_by(DealRow.stage_id)
        )
        for stage_id, count in rows:
            counts[stage_id] = count
        return counts

    # --- writes -------------------------------------------------------------------

    async def create(self, body: PipelineCreate) -> PipelineRow:
        stages = ordered_stages(body.stages, "body.stages")
        for index, stage in stages:
            if stage.id is not None:
                raise InvalidInput.at(
                    f"body.stages[{index}].id", "a new pipeline's stages have no id yet"
                )
        await self._check_name_free(body.name, None)
        row = PipelineRow(id=uuid.uuid4(), name=body.name, position=0, revision=1)
        await self._place(row, body.position)
        self.pipelines.add(row)
        await self.session.flush()
        for place, (_, stage) in enumerate(stages):
            self._add_stage(row.id, stage, place)
        await self._commit()
        return row

    async def update(self, row: PipelineRow, body: PipelineUpdate) -> PipelineRow:
        given = body.model_fields_set
        if "name" in given and body.name is not None and body.name != row.name:
            await self._check_name_free(body.name, row.id)
            row.name = body.name
        if "position" in given and body.position is not None:
            await self._place(row, body.position)
        if "stages" in given and body.stages is not None:
            await self._replace_stages(row, body.stages)
        self.pipelines.touch(row)
        await self._commit()
        return row

    async def delete(self, row: PipelineRow) -> None:
        """Its stages go with it (the foreign key cascades); not while it holds deals."""
        deals = await self.session.scalar(
            self.deals.scoped().with_only_columns(func.count()).where(DealRow.pipeline_id == row.id)
        )
        if deals:
            raise PipelineInUse(deals)
        await self.session.delete(row)
        await self._commit()

    # --- helpers ------------------------------------------------------------------

    async def _replace_stages(self, row: PipelineRow, given: Sequence[StageInput]) -> None:
        stages = ordered_stages(given, "body.stages")
        current = {stage.id: stage for stage in (await self.stages_of([row.id]))[row.id]}
        for index, stage in stages:
            if stage.id is not None and stage.id not in current:
                raise ReferenceNotFound(f"body.stages[{index}].id", "stage of this pipeline")
        kept = {stage.id for _, stage in stages if stage.id is not None}
        counts = await self.deal_counts(list(current))
        removed = [existing for stage_id, existing in current.items() if stage_id not in kept]
        for existing in removed:
            if counts[existing.id]:
                raise StageInUse(existing.name, counts[existing.id], "removing it", "body.stages")
        for index, stage in stages:
            if stage.id is None:
                continue
            existing = current[stage.id]
            if stage.kind is not existing.kind and counts[stage.id]:
                raise StageInUse(
                    existing.name,
                    counts[stage.id],
                    "changing its kind",
                    f"body.stages[{index}].kind",
                )
        for existing in removed:
            await self.session.delete(existing)
        for place, (_, stage) in enumerate(stages):
            if stage.id is None:
                self._add_stage(row.id, stage, place)
                continue
            existing = current[stage.id]
            if (existing.name, existing.kind, existing.position) != (stage.name, stage.kind, place):
                existing.name, existing.kind, existing.position = stage.name, stage.kind, place
                self.stages.touch(existing)

    async def _place(self, row: PipelineRow, position: int | None) -> None:
        """Put the pipeline at ``position`` among the tenant's (last when None or beyond
        the end); the others keep their order around it, numbered 0, 1, ... again."""
        pipelines = await self.pipelines.all(self.pipelines.scoped().order_by(*_IN_ORDER))
        others = [pipeline for pipeline in pipelines if pipeline.id != row.id]
        others.insert(len(others) if position is None else min(position, len(others)), row)
        for index, pipeline in enumerate(others):
            if pipeline.position != index:
                pipeline.position = index
                if pipeline is not row:
                    self.pipelines.touch(pipeline)  # its position is part of what it shows

    def _add_stage(self, pipeline_id: uuid.UUID, stage: StageInput, position: int) -> None:
        self.stages.add(
            StageRow(
                id=uuid.uuid4(),
                pipeline_id=pipeline_id,
                name=stage.name,
                kind=stage.kind,
                position=position,
                revision=1,
            )
        )

    async def _check_name_free(self, name: str, own: uuid.UUID | None) -> None:
        query = self.pipelines.scoped().where(func.lower(PipelineRow.name) == name.lower())
        if own is not None:
            query = query.where(PipelineRow.id != own)
        if await self.session.scalar(query.limit(1)) is not None:
            raise PipelineNameTaken(name)

    async def _commit(self) -> None:
        try:
            await self.session.commit()
        except IntegrityError as exc:
            # A deal moved into a stage being removed at the same moment: the foreign key
            # (RESTRICT) refuses the removal.
            await self.session.rollback()
            raise Conflict(
                "a deal moved into a stage being removed; read the pipeline again",
                details=[FieldProblem(field="body.stages", message="changed meanwhile")],
            ) from exc


def _pipeline(row: PipelineRow, stages: Sequence[StageRow]) -> Pipeline:
    return Pipeline(
        id=row.id,
        name=row.name,
        position=row.position,
        stages=[
            Stage(id=stage.id, name=stage.name, kind=stage.kind, position=stage.position)
            for stage in stages
        ],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
