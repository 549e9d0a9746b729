"""The tenant's routing graph and the cycles a change would close (pure, no database).

Nodes are route plans, groups and IVR menus; an edge is one reference to
another node found in a stored document: a plan's steps (group, queue, IVR
and route-plan steps, CRM category targets, HTTP fallbacks, nested schedule
branches), a group's overflow, an IVR menu's digit options and its timeout and
invalid-input targets. Users, schedules and the other target kinds are leaves.

Which cycles are refused: every cycle that passes through a route plan or a
group (a call could go round it forever without anybody choosing to). A cycle
made of IVR menus only is allowed, because a sub-menu's "back to the main
menu" option is ordinary and each turn waits for the caller.

Documents are read as stored JSON (dicts), so the same walk serves the request
being validated and the rows already in the database.
"""

from __future__ import annotations

import enum
import uuid
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


class NodeKind(enum.StrEnum):
    ROUTE_PLAN = "route-plan"
    GROUP = "group"
    IVR_MENU = "ivr-menu"


class RefKind(enum.StrEnum):
    """Everything a document can refer to; the first three are graph nodes."""

    ROUTE_PLAN = "route-plan"
    GROUP = "group"
    IVR_MENU = "ivr-menu"
    USER = "user"
    SCHEDULE = "schedule"
    PROMPT = "prompt"
    CONFERENCE_ROOM = "conference-room"

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    RefKind.ROUTE_PLAN: "route plan",
    RefKind.GROUP: "group",
    RefKind.IVR_MENU: "IVR menu",
    RefKind.USER: "user",
    RefKind.SCHEDULE: "schedule",
    RefKind.PROMPT: "prompt",
    RefKind.CONFERENCE_ROOM: "conference room",
}

# The id fields of steps and Target documents, and what each names.
ID_FIELDS: Mapping[str, RefKind] = {
    "route_plan_id": RefKind.ROUTE_PLAN,
    "group_id": RefKind.GROUP,
    "ivr_menu_id": RefKind.IVR_MENU,
    "user_id": RefKind.USER,
    "schedule_id": RefKind.SCHEDULE,
    "prompt_id": RefKind.PROMPT,  # a queue's music
    "room_id": RefKind.CONFERENCE_ROOM,
}


@dataclass(frozen=True)
class Reference:
    kind: RefKind
    id: uuid.UUID
    field: str  # path of the id field, e.g. body.steps[2].branches.closed[0].group_id


@dataclass(frozen=True)
class NodeRef:
    kind: NodeKind
    id: uuid.UUID


@dataclass(frozen=True)
class Edge:
    target: NodeRef
    field: str  # path of the id field that makes the reference


@dataclass(frozen=True)
class ProposedChange:
    """A plan, group or IVR menu as it will be after a create or update.

    ``edges`` are all its outgoing references after the change (not only the
    new ones), with the request's field paths (``body...``): the path of the
    edge that closes a cycle is the one the error names.
    """

    node: NodeRef
    name: str
    edges: tuple[Edge, ...]


# --- documents -> references -------------------------------------------------


def _id_references(document: Mapping[str, Any], at: str) -> Iterator[Reference]:
    for key, kind in ID_FIELDS.items():
        value = document.get(key)
        if value is None:
            continue
        try:
            row_id = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        except ValueError:
            continue  # not an id: nothing can be reached through it
        yield Reference(kind, row_id, f"{at}.{key}")


def target_references(target: object, at: str) -> Iterator[Reference]:
    """References of one Target document (targets.py) found at field path ``at``."""
    if isinstance(target, Mapping):
        yield from _id_references(target, at)


def step_references(steps: object, at: str) -> Iterator[Reference]:
    """References of a list of route-plan step documents at ``at`` (e.g. ``body.steps``),
    in document order, nested schedule branches included."""
    if not isinstance(steps, list):
        return
    for index, step in enumerate(steps):
        if not isinstance(step, Mapping):
            continue
        here = f"{at}[{index}]"
        yield from _id_references(step, here)
        branches = step.get("branches")
        if isinstance(branches, Mapping):
            for name, branch in branches.items():
                yield from step_references(branch, f"{here}.branches.{name}")
        categories = step.get("categories")
        if isinstance(categories, Mapping):
            for category, target in categories.items():
                yield from target_references(target, f"{here}.categories.{category}")
        yield from target_references(step.get("fallback"), f"{here}.fallback")
        music = step.get("music")
        if isinstance(music, Mapping):
            yield from _id_references(music, f"{here}.music")


def _edges(references: Iterable[Reference]) -> tuple[Edge, ...]:
    nodes = {kind.value for kind in NodeKind}
    return tuple(
        Edge(NodeRef(NodeKind(ref.kind.value), ref.id), ref.field)
        for ref in references
        if ref.kind.value in nodes
    )


def route_plan_edges(steps: object, at: str = "body.steps") -> tuple[Edge, ...]:
    return _edges(step_references(steps, at))


def group_edges(overflow: object, at: str = "body.overflow") -> tuple[Edge, ...]:
    return _edges(target_references(overflow, at))


def ivr_menu_edges(
    options: object, timeout_target: object, invalid_target: object, at: str = "body"
) -> tuple[Edge, ...]:
    """Edges of an IVR menu: ``options`` maps a digit to a Target document."""
    references: list[Reference] = []
    if isinstance(options, Mapping):
        for digit, target in options.items():
            references += target_references(target, f"{at}.options.{digit}")
    references += target_references(timeout_target, f"{at}.timeout_target")
    references += target_references(invalid_target, f"{at}.invalid_target")
    return _edges(references)


# --- the graph ---------------------------------------------------------------


@dataclass(frozen=True)
class Cycle:
    field: str  # the changed object's field whose reference closes the cycle
    names: tuple[str, ...]  # from the changed object round to itself

    def __str__(self) -> str:
        return " -> ".join(self.names)


class RouteGraph:
    def __init__(self) -> None:
        self._edges: dict[NodeRef, tuple[Edge, ...]] = {}
        self._names: dict[NodeRef, str] = {}

    def add(self, node: NodeRef, name: str, edges: Iterable[Edge]) -> None:
        self._names[node] = name
        self._edges[node] = tuple(edges)

    def describe(self, node: NodeRef) -> str:
        name = self._names.get(node, str(node.id))
        if node.kind is NodeKind.ROUTE_PLAN:
            return name
        return f"{'group' if node.kind is NodeKind.GROUP else 'IVR menu'} {name}"

    def cycle_after(self, change: ProposedChange) -> Cycle | None:
        """The shortest refused cycle through the changed node once ``change`` is applied.

        Cycles elsewhere in the graph (older data) are not this change's doing
        and do not block it.
        """
        graph = RouteGraph()
        graph._edges = dict(self._edges)
        graph._names = dict(self._names)
        graph.add(change.node, change.name, change.edges)
        return graph._shortest_cycle(change.node)

    def _shortest_cycle(self, start: NodeRef) -> Cycle | None:
        # Breadth-first over (node, passed a plan or group yet): the first way
        # back to ``start`` with the flag set is the shortest refused cycle.
        origin: _State = (start, _counts(start))
        parents: dict[_State, tuple[_State, Edge]] = {}
        queue: deque[_State] = deque([origin])
        seen = {origin}
        while queue:
            state = queue.popleft()
            node, counted = state
            for edge in self._edges.get(node, ()):
                reached = counted or _counts(edge.target)
                if edge.target == start:
                    if reached:
                        return self._cycle(start, state, edge, parents)
                    continue  # a cycle of IVR menus only: allowed
                following = (edge.target, reached)
                if following not in seen:
                    seen.add(following)
                    parents[following] = (state, edge)
                    queue.append(following)
        return None

    def _cycle(
        self,
        start: NodeRef,
        last: _State,
        closing: Edge,
        parents: Mapping[_State, tuple[_State, Edge]],
    ) -> Cycle:
        path = [start, last[0]]
        first = closing
        state = last
        while state in parents:
            state, first = parents[state]
            path.append(state[0])
        path.reverse()  # start ... last, start
        return Cycle(first.field, tuple(self.describe(node) for node in path))


_State = tuple[NodeRef, bool]


def _counts(node: NodeRef) -> bool:
    """Whether a cycle through ``node`` is refused (see the module docstring)."""
    return node.kind is not NodeKind.IVR_MENU
