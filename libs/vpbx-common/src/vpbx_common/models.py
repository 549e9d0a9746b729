"""The base of every shared pydantic model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Immutable, and a misspelt key in a file or message fails loudly instead of vanishing."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
