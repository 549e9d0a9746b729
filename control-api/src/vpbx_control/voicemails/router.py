"""/v1/voicemails: the voice messages callers left in the tenant's boxes.

Supervisors and tenant admins see every box; an agent their own box only (others' are
404). The audio is in the object store: ``/audio`` serves it like a call recording.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import AwareDatetime

from ..audio.serve import AUDIO_RESPONSES, AudioFormat
from ..deps import Audio, Context, Paging, Session, TenantMember
from ..errors import error_responses
from ..paging import Page
from .errors import VoicemailAudioMissing
from .repository import VoicemailFilters
from .schemas import VoicemailOut, VoicemailUpdate
from .service import VoicemailService

router = APIRouter(prefix="/v1/voicemails", tags=["voicemails"])

VISIBILITY = (
    "Supervisors and tenant admins see every box of the tenant, an agent their own box; "
    "another tenant's message, or another agent's, is 404."
)


def voicemail_service(
    session: Session, principal: TenantMember, context: Context
) -> VoicemailService:
    return VoicemailService(session, principal, context.objects)


Service = Annotated[VoicemailService, Depends(voicemail_service)]


@router.get(
    "",
    response_model=Page[VoicemailOut],
    summary="List voice messages, newest first",
    description=f"Voice messages left in the tenant's boxes, newest first. {VISIBILITY}",
)
async def list_voicemails(
    _: TenantMember,
    service: Service,
    paging: Paging,
    user_id: Annotated[uuid.UUID | None, Query(description="only this user's box")] = None,
    from_: Annotated[
        AwareDatetime | None,
        Query(alias="from", description="ISO 8601 instant with an offset; left then or later"),
    ] = None,
    to: Annotated[
        AwareDatetime | None, Query(description="ISO 8601 instant with an offset; left before")
    ] = None,
    listened: Annotated[
        bool | None, Query(description="true: only listened ones; false: only new ones")
    ] = None,
) -> Page[VoicemailOut]:
    filters = VoicemailFilters(user_id=user_id, start=from_, end=to, listened=listened)
    rows, total = await service.page(filters, paging)
    return Page(
        items=[VoicemailOut.of(row) for row in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/{voicemail_id}",
    response_model=VoicemailOut,
    summary="Read a voice message",
    description=VISIBILITY,
    responses=error_responses(404),
)
async def get_voicemail(_: TenantMember, service: Service, voicemail_id: uuid.UUID) -> VoicemailOut:
    return VoicemailOut.of(await service.get(voicemail_id))


@router.patch(
    "/{voicemail_id}",
    response_model=VoicemailOut,
    summary="Mark a voice message listened (or new again)",
    description=VISIBILITY,
    responses=error_responses(404),
)
async def update_voicemail(
    _: TenantMember, service: Service, voicemail_id: uuid.UUID, body: VoicemailUpdate
) -> VoicemailOut:
    return VoicemailOut.of(await service.update(voicemail_id, body))


@router.delete(
    "/{voicemail_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a voice message and its audio",
    description=f"The audio is deleted from the store first; when the store does not answer "
    f"the message is kept and the answer is 503. {VISIBILITY}",
    responses=error_responses(404, 503),
)
async def delete_voicemail(_: TenantMember, service: Service, voicemail_id: uuid.UUID) -> Response:
    await service.delete(voicemail_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{voicemail_id}/audio",
    response_class=Response,
    summary="Download a voice message",
    description="The message as stored, Ogg/Opus mono, with HTTP Range (206, 416), or "
    "`format=wav` for 8 kHz 16-bit PCM WAV (Range works on the WAV too). Fetching it does "
    f"not mark it listened (PATCH does). {VISIBILITY}",
    responses=AUDIO_RESPONSES,
)
async def get_voicemail_audio(
    _: TenantMember,
    service: Service,
    audio: Audio,
    voicemail_id: uuid.UUID,
    audio_format: Annotated[
        AudioFormat,
        Query(alias="format", description="`ogg` (default, as stored) or `wav` (decoded)"),
    ] = AudioFormat.OGG,
    range_header: Annotated[
        str | None, Header(alias="Range", description="one byte range, e.g. `bytes=0-1023`")
    ] = None,
    if_range: Annotated[
        str | None, Header(alias="If-Range", description="present: the Range is ignored")
    ] = None,
) -> Response:
    row = await service.get(voicemail_id)
    return await audio.respond(
        row.key,
        audio_format=audio_format,
        range_header=range_header,
        if_range=if_range,
        filename=f"voicemail-{row.id}",
        missing=VoicemailAudioMissing,
    )
