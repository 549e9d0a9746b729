from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.outbound import OutboundPolicy

from ..auth.principal import Principal
from ..decisions.service import ensure_decision_secret
from ..errors import InvalidInput, ReferenceNotFound
from ..nodeconfig.publisher import ConfigPublisher
from ..numbers.store import NumberStore
from ..paging import PageParams, check_if_match
from ..references import refuse_if_number_entry, refuse_if_referenced
from ..repository import TenantWork
from .errors import RouteCycle, RoutePlanIsNumberEntry, RoutePlanNameTaken, UnreachableStep
from .graph import NodeKind, NodeRef, ProposedChange, RefKind, route_plan_edges, step_references
from .models import RoutePlanRow
from .repository import RoutePlanRepository, load_route_graph, lock_route_graph
from .schemas import (
    MAX_DEPTH,
    MAX_STEPS,
    HttpDecisionStep,
    RoutePlanCreate,
    RoutePlanUpdate,
    Step,
    walk,
)


async def refuse_cycles(session: AsyncSession, tenant_id: str, change: ProposedChange) -> None:
    """Raise RouteCycle (422, naming the field) if ``change`` would close a route cycle.

    Call it from the service of any object whose targets can lead to a plan, a
    group or an IVR menu, after checking that the references exist and before
    changing any row. It locks the tenant's routing graph until the transaction
    ends, so commit (or roll back) soon after.
    """
    await lock_route_graph(session, tenant_id)
    graph = await load_route_graph(session, tenant_id)
    cycle = graph.cycle_after(change)
    if cycle is not None:
        raise RouteCycle(cycle.field, str(cycle))


def check_structure(steps: list[Step], at: str = "body.steps") -> None:
    """Nesting and size limits, and no step after one that always ends the call."""
    total = 0
    for path, branch, depth in walk(steps, at):
        if depth > MAX_DEPTH:
            raise InvalidInput.at(path, f"schedule branches nest at most {MAX_DEPTH - 1} deep")
        total += len(branch)
        for index, step in enumerate(branch[:-1]):
            if step.ends_call():
                raise UnreachableStep(f"{path}[{index + 1}]", f"{path}[{index}], {step.type}")
    if total > MAX_STEPS:
        raise InvalidInput.at(at, f"a plan has at most {MAX_STEPS} steps, branches included")


def _decision_steps(steps: list[Step]) -> Iterator[tuple[str, int, HttpDecisionStep]]:
    """Every HTTP-decision step of a plan, branches included, with its list's path and index."""
    for path, branch, _ in walk(steps, "body.steps"):
        for index, step in enumerate(branch):
            if isinstance(step, HttpDecisionStep):
                yield path, index, step


class RoutePlanService:
    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        publisher: ConfigPublisher,
        numbers: NumberStore,
        outbound: OutboundPolicy,
    ) -> None:
        self.outbound = outbound
        self.session = session
        self.tenant_id = principal.tenant
        self.repository = RoutePlanRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, publisher)
        self.numbers = numbers

    async def page(self, params: PageParams, name: str | None) -> tuple[list[RoutePlanRow], int]:
        return await self.repository.page(self.repository.filtered(name), params)

    async def get(self, plan_id: uuid.UUID) -> RoutePlanRow:
        return await self.repository.get(plan_id)

    async def create(self, body: RoutePlanCreate) -> RoutePlanRow:
        if await self.repository.name_taken(body.name):
            raise RoutePlanNameTaken(body.name)
        steps = await self._checked_steps(body.steps)
        plan_id = uuid.uuid4()
        await self._refuse_cycles(plan_id, body.name, steps)
        await self._ensure_decision_secret(body.steps)
        row = self.repository.add(RoutePlanRow(id=plan_id, name=body.name, steps=steps, revision=1))
        await self.work.commit()
        return row

    async def update(
        self, plan_id: uuid.UUID, body: RoutePlanUpdate, if_match: str | None
    ) -> RoutePlanRow:
        row = await self.repository.get(plan_id)
        check_if_match(if_match, row.etag())
        name = body.name if body.name is not None else row.name
        if name != row.name and await self.repository.name_taken(name):
            raise RoutePlanNameTaken(name)
        steps = row.steps
        if body.steps is not None:
            steps = await self._checked_steps(body.steps)
            await self._refuse_cycles(row.id, name, steps)
            await self._ensure_decision_secret(body.steps)
        row.name = name
        row.steps = steps
        self.repository.touch(row)
        await self.work.commit()
        return row

    async def delete(self, plan_id: uuid.UUID, if_match: str | None) -> None:
        row = await self.repository.get(plan_id)
        check_if_match(if_match, row.etag())
        await refuse_if_referenced(self.session, self.tenant_id, row.id, "route plan")
        await refuse_if_number_entry(self.numbers, self.tenant_id, row.id, RoutePlanIsNumberEntry)
        await self.repository.delete(row)
        await self.work.commit()

    async def _checked_steps(self, steps: list[Step]) -> list[Any]:
        """The steps as stored documents, once their shape and references are sound."""
        check_structure(steps)
        self._check_decision_urls(steps)
        documents: list[Any] = [step.model_dump(mode="json") for step in steps]
        references = list(step_references(documents, "body.steps"))
        wanted: defaultdict[RefKind, set[uuid.UUID]] = defaultdict(set)
        for reference in references:
            wanted[reference.kind].add(reference.id)
        found = {kind: await self.repository.existing(kind, ids) for kind, ids in wanted.items()}
        for reference in references:  # the first missing one, in document order
            if reference.id not in found[reference.kind]:
                raise ReferenceNotFound(reference.field, reference.kind.label)
        return documents

    def _check_decision_urls(self, steps: list[Step]) -> None:
        for path, index, step in _decision_steps(steps):
            problem = self.outbound.problem(str(step.url))
            if problem is not None:
                raise InvalidInput.at(f"{path}[{index}].url", problem)

    async def _ensure_decision_secret(self, steps: list[Step]) -> None:
        """A plan that asks the tenant's server is always signed: the first one makes
        the tenant's decision secret (committed with the plan; shown by a rotation)."""
        if any(True for _ in _decision_steps(steps)):
            await ensure_decision_secret(self.session, self.tenant_id)

    async def _refuse_cycles(self, plan_id: uuid.UUID, name: str, steps: list[Any]) -> None:
        change = ProposedChange(
            node=NodeRef(NodeKind.ROUTE_PLAN, plan_id), name=name, edges=route_plan_edges(steps)
        )
        await refuse_cycles(self.session, self.tenant_id, change)
