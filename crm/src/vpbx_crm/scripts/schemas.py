"""Call script request and response bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from vpbx_control.schema_base import StrictInput
from vpbx_control.targets import E164

ScriptName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Field(examples=["Входящий: заявка с сайта"]),
]
StageText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    Field(examples=["Поздороваться, назвать компанию и себя"]),
]
CampaignLabel = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=63)
]
MAX_STAGES = 50

Numbers = Annotated[
    list[E164],
    Field(
        max_length=100,
        description="the tenant's numbers (E.164) whose calls use this script",
        examples=[["+74950000001"]],
    ),
]
Labels = Annotated[
    list[CampaignLabel],
    Field(
        max_length=100,
        description="campaign (ad-channel) labels of numbers whose calls use this script, "
        "when no script names the dialled number itself",
        examples=[["yandex-direct"]],
    ),
]
Stages = Annotated[
    list[StageText],
    Field(
        min_length=1,
        max_length=MAX_STAGES,
        description="what to say or ask, in order; each is checked off on the after-call form",
    ),
]


class CallScriptCreate(StrictInput):
    name: ScriptName
    numbers: Numbers = Field(default_factory=list)
    labels: Labels = Field(default_factory=list)
    stages: Stages


class CallScriptUpdate(StrictInput):
    """Only the fields given change; a list given replaces the list."""

    name: ScriptName | None = None
    numbers: Numbers | None = None
    labels: Labels | None = None
    stages: Stages | None = None


class CallScript(BaseModel):
    id: uuid.UUID
    name: str
    numbers: list[str]
    labels: list[str]
    stages: list[str] = Field(description="in order")
    created_at: dt.datetime
    updated_at: dt.datetime
