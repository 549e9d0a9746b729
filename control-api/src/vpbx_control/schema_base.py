"""The base of every request body: a misspelt field is a 422, not silently ignored."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
