"""The tenant's pipelines, stages and deals, scoped (``repository.Scoped``)."""

from __future__ import annotations

from ..repository import Scoped
from .models import DealRow, PipelineRow, StageRow


class Pipelines(Scoped[PipelineRow]):
    model = PipelineRow
    label = "pipeline"


class Stages(Scoped[StageRow]):
    model = StageRow
    label = "stage"


class Deals(Scoped[DealRow]):
    model = DealRow
    label = "deal"
