from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from vpbx_common.nodeconfig import FeatureCodesEntry

from ..schema_base import StrictInput

Code = Annotated[
    str,
    Field(
        pattern=r"^[*#][0-9*#]{0,3}$",
        description="1-4 keys starting with * or #, so no extension or number is shadowed",
    ),
]


class FeatureCodes(StrictInput):
    """The codes, all of them (PUT replaces the set); each must differ from the others."""

    pickup_group: Code = Field(
        default="*8", description="answer a call ringing a colleague of one of your groups"
    )
    pickup_directed: Code = Field(
        default="**", description="followed by an extension: answer the call ringing it"
    )
    park: Code = Field(
        default="*7",
        description="followed by a slot 1-9: transfer a call there to park it, dial it to take "
        "the call back; transferring to the code alone takes the first free slot",
    )
    listen: Code = Field(
        default="*33", description="followed by an extension: a supervisor listens to its call"
    )
    whisper: Code = Field(
        default="*34", description="... and talks to that agent only (the caller does not hear)"
    )
    barge: Code = Field(default="*35", description="... and joins the conversation")
    park_recall_s: int = Field(
        default=120,
        ge=0,
        le=3600,
        description="a call parked this long rings the phones of whoever parked it (30 s, "
        "then it waits again; after three unanswered recalls the caller is hung up); 0: never",
    )

    @model_validator(mode="after")
    def _distinct(self) -> FeatureCodes:
        codes = list(self.model_dump(exclude={"park_recall_s"}).values())
        if len(set(codes)) != len(codes):
            raise ValueError("every feature needs a code of its own")
        return self

    def entry(self) -> FeatureCodesEntry:
        return FeatureCodesEntry.model_validate(self.model_dump())
