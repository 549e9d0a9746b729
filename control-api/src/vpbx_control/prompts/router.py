"""/v1/prompts: the tenant's prompt library (hold music, greetings, any recording)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, Query, Response, UploadFile, status

from ..deps import Context, Paging, Session, TenantAdmin, TenantMember
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .schemas import PromptName, PromptOut, SpeechCreate
from .service import PromptLibraryService
from .upload import ACCEPTED_AUDIO, LIBRARY_PROMPT_LIMITS, WAV_RESPONSES, read_upload, wav_response

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])

_USE = (
    'Name it as `{"kind": "audio", "prompt_id"}` in a queue step\'s `music`, a user\'s '
    "`settings.voicemail_greeting`, a number's `greeting` or an IVR menu's `prompt`."
)


def prompt_library_service(
    session: Session, principal: TenantMember, context: Context
) -> PromptLibraryService:
    return PromptLibraryService(session, principal, context.publisher, context.speech)


Service = Annotated[PromptLibraryService, Depends(prompt_library_service)]


def _created(row: PromptOut, response: Response) -> PromptOut:
    response.headers["Location"] = f"/v1/prompts/{row.id}"
    response.headers["ETag"] = f'"{row.revision}"'
    return row


@router.get(
    "",
    response_model=Page[PromptOut],
    summary="List the tenant's prompts",
    description=(
        "Library uploads and rendered speech, and the recordings and speech of IVR menus "
        "and greetings (`library: false`, deleted once nothing plays them). By name."
    ),
)
async def list_prompts(
    _: TenantMember,
    service: Service,
    paging: Paging,
    name: Annotated[str | None, Query(max_length=100, description="name contains")] = None,
    library: Annotated[
        bool | None, Query(description="true: only the library's; false: only the others")
    ] = None,
) -> Page[PromptOut]:
    rows, total = await service.list(paging, name, library)
    items = [PromptOut.of(row) for row in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    response_model=PromptOut,
    status_code=status.HTTP_201_CREATED,
    summary="Upload a prompt to the library",
    description=(
        f"Multipart upload, field `file`, {LIBRARY_PROMPT_LIMITS.describe()} (hold music "
        f"runs long); optional field `name`. Accepted: {ACCEPTED_AUDIO} " + _USE
    ),
    responses=error_responses(413, 422),
)
async def upload_prompt(
    _: TenantAdmin,
    service: Service,
    file: Annotated[UploadFile, File(description="a WAV file, at most 20 MB and 10 minutes")],
    response: Response,
    name: Annotated[PromptName | None, Form(description="default: the file's name")] = None,
) -> PromptOut:
    data = await read_upload(file, LIBRARY_PROMPT_LIMITS)
    row = await service.upload(file.filename, name, data)
    return _created(PromptOut.of(row), response)


@router.post(
    "/speech",
    response_model=PromptOut,
    status_code=status.HTTP_201_CREATED,
    summary="Speak a text into the library",
    description=(
        "The text is rendered with espeak-ng (as an IVR menu's `tts` prompt) and kept "
        "like an upload. A language espeak-ng has no voice for is a 422 naming "
        "`body.language`; without espeak-ng a 503 `tts-unavailable` and nothing is "
        "stored. " + _USE
    ),
    responses=error_responses(422, 503),
)
async def speak_prompt(
    _: TenantAdmin, service: Service, body: SpeechCreate, response: Response
) -> PromptOut:
    row = await service.speak(body)
    return _created(PromptOut.of(row), response)


@router.get(
    "/{prompt_id}",
    response_model=PromptOut,
    summary="Read one prompt",
    responses=error_responses(404),
)
async def get_prompt(
    _: TenantMember, service: Service, prompt_id: uuid.UUID, response: Response
) -> PromptOut:
    row = await service.get(prompt_id)
    response.headers["ETag"] = row.etag()
    return PromptOut.of(row)


@router.get(
    "/{prompt_id}/audio",
    response_class=Response,
    summary="Download a prompt as the nodes play it",
    description="8 kHz mono 16-bit PCM WAV; `ETag` is its SHA-256 (`If-None-Match` -> 304).",
    responses={**WAV_RESPONSES, **error_responses(404)},
)
async def download_prompt(
    _: TenantMember,
    service: Service,
    prompt_id: uuid.UUID,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    row = await service.get(prompt_id)
    return wav_response(row.audio, row.sha256, if_none_match)


@router.delete(
    "/{prompt_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a prompt nothing plays",
    description=(
        "409 `prompt-in-use` naming every IVR menu, number greeting, queue step (by its "
        "route plan) and user voicemail greeting that plays it; change those first."
    ),
    responses=error_responses(404, 409, 412),
)
async def delete_prompt(
    _: TenantAdmin, service: Service, prompt_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(prompt_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
