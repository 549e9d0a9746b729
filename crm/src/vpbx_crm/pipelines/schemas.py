"""Pipeline request and response bodies: a pipeline carries its ordered stages."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from vpbx_control.schema_base import StrictInput

from ..deals.models import StageKind

PipelineName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Field(examples=["Sales"]),
]
StageName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Field(examples=["Proposal"]),
]
Position = Annotated[int, Field(ge=0, le=1000)]
MAX_STAGES = 30


class StageInput(StrictInput):
    id: uuid.UUID | None = Field(
        default=None,
        description="an existing stage of this pipeline, kept with its deals; leave out for "
        "a new stage",
    )
    name: StageName
    kind: StageKind = Field(
        default=StageKind.OPEN,
        description="open: the deal is in progress; won/lost: it is closed",
    )
    position: Position | None = Field(
        default=None,
        description="give every stage a position (they are sorted by it) or none (the "
        "list's order is the order)",
    )


StageList = Annotated[
    list[StageInput],
    Field(
        max_length=MAX_STAGES,
        description="in order; at least one open stage, exactly one won and at least one "
        "lost stage; names unique within the pipeline",
        examples=[
            [
                {"name": "New", "kind": "open"},
                {"name": "Proposal", "kind": "open"},
                {"name": "Won", "kind": "won"},
                {"name": "Lost", "kind": "lost"},
            ]
        ],
    ),
]


class PipelineCreate(StrictInput):
    name: PipelineName
    position: Position | None = Field(
        default=None,
        description="place among the tenant's pipelines, 0 for the first (it takes the new "
        "deals that name no pipeline); the others move to make room. Leave out to add it "
        "last",
    )
    stages: StageList


class PipelineUpdate(StrictInput):
    """Only the fields given change. ``stages`` replaces the whole list: a stage given with
    its ``id`` is kept (renamed, moved), one without is new, one left out is removed (409
    ``stage-in-use`` while deals sit in it)."""

    name: PipelineName | None = None
    position: Position | None = Field(
        default=None, description="a new place among the tenant's pipelines, 0 for the first"
    )
    stages: StageList | None = None


class Stage(BaseModel):
    id: uuid.UUID
    name: str
    kind: StageKind
    position: int = Field(description="0 for the first stage")


class Pipeline(BaseModel):
    id: uuid.UUID
    name: str
    position: int
    stages: list[Stage]
    created_at: dt.datetime
    updated_at: dt.datetime
