"""/v1/ivr-menus: voice menus (prompt, digit -> target, timeout and invalid-input targets)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Header, Query, Response, UploadFile, status

from ..deps import Context, Paging, Session, TenantAdmin, TenantMember
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from ..prompts.upload import (
    ACCEPTED_AUDIO,
    MENU_PROMPT_LIMITS,
    WAV_RESPONSES,
    read_upload,
    wav_response,
)
from .models import IvrMenuRow, PromptRow
from .schemas import IvrMenuCreate, IvrMenuOut, IvrMenuUpdate, PromptOut
from .service import IvrMenuService

router = APIRouter(prefix="/v1/ivr-menus", tags=["ivr-menus"])

_TTS = (
    "A `tts` prompt is rendered with espeak-ng when the menu is saved, converted like an "
    "upload (8 kHz mono 16-bit PCM WAV) and stored as the menu's prompt recording; the "
    "menu reads back as `tts` with its text, language and the rendered `prompt_id`, and "
    "`GET /v1/ivr-menus/{id}/prompt` downloads the speech. A language espeak-ng has no "
    "voice for is a 422 naming `body.prompt.language`; without espeak-ng on the server "
    "a `tts` prompt is a 503 `tts-unavailable` and nothing is saved."
)


def ivr_menu_service(session: Session, principal: TenantMember, context: Context) -> IvrMenuService:
    return IvrMenuService(session, principal, context.publisher, context.numbers, context.speech)


Service = Annotated[IvrMenuService, Depends(ivr_menu_service)]


async def _out(
    service: IvrMenuService, row: IvrMenuRow, response: Response | None = None
) -> IvrMenuOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return (await _outs(service, [row]))[0]


async def _outs(service: IvrMenuService, rows: list[IvrMenuRow]) -> list[IvrMenuOut]:
    """Menus as read back; one that plays rendered speech shows it as `tts` with its text."""
    spoken = await service.spoken(rows)
    outs = []
    for row in rows:
        out = IvrMenuOut.model_validate(row, from_attributes=True)
        if row.id in spoken:
            out = out.model_copy(update={"prompt": spoken[row.id]})
        outs.append(out)
    return outs


def _prompt_out(row: PromptRow) -> PromptOut:
    return PromptOut.model_validate(row, from_attributes=True)


@router.get("", response_model=Page[IvrMenuOut], summary="List IVR menus")
async def list_ivr_menus(
    _: TenantMember,
    service: Service,
    paging: Paging,
    name: Annotated[str | None, Query(max_length=63, description="name contains")] = None,
) -> Page[IvrMenuOut]:
    rows, total = await service.list(paging, name)
    items = await _outs(service, rows)
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


@router.post(
    "",
    response_model=IvrMenuOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create an IVR menu",
    description=(
        "Every target must exist in the tenant (404 naming the field, e.g. "
        "`body.options.1.group_id`); a target leading back through a route plan or a "
        "group to this menu is a route cycle (422). Upload a recording afterwards with "
        "`POST /v1/ivr-menus/{id}/prompt`. " + _TTS
    ),
    responses=error_responses(404, 409, 422, 503),
)
async def create_ivr_menu(
    _: TenantAdmin, service: Service, body: IvrMenuCreate, response: Response
) -> IvrMenuOut:
    row = await service.create(body)
    response.headers["Location"] = f"/v1/ivr-menus/{row.id}"
    return await _out(service, row, response)


@router.get(
    "/{menu_id}",
    response_model=IvrMenuOut,
    summary="Read an IVR menu",
    responses=error_responses(404),
)
async def get_ivr_menu(
    _: TenantMember, service: Service, menu_id: uuid.UUID, response: Response
) -> IvrMenuOut:
    return await _out(service, await service.get(menu_id), response)


@router.patch(
    "/{menu_id}",
    response_model=IvrMenuOut,
    summary="Change an IVR menu",
    description=("Fields left out stay as they are; `timeout_target: null` means hang up. " + _TTS),
    responses=error_responses(404, 409, 412, 422, 503),
)
async def update_ivr_menu(
    _: TenantAdmin,
    service: Service,
    menu_id: uuid.UUID,
    body: IvrMenuUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> IvrMenuOut:
    return await _out(service, await service.update(menu_id, body, if_match), response)


@router.delete(
    "/{menu_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete an IVR menu nothing routes to",
    responses=error_responses(404, 409, 412),
)
async def delete_ivr_menu(
    _: TenantAdmin, service: Service, menu_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(menu_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{menu_id}/prompt",
    response_model=PromptOut,
    status_code=status.HTTP_201_CREATED,
    summary="Upload the menu's prompt recording",
    description=(
        f"Multipart upload, field `file`, {MENU_PROMPT_LIMITS.describe()}. Accepted: "
        f"{ACCEPTED_AUDIO} The recording becomes the menu's prompt "
        "(`{kind: audio, prompt_id}`); longer audio (hold music) goes to the prompt "
        "library, `POST /v1/prompts`."
    ),
    responses=error_responses(404, 412, 413, 422),
)
async def upload_prompt(
    _: TenantAdmin,
    service: Service,
    menu_id: uuid.UUID,
    file: Annotated[UploadFile, File(description="a WAV file, at most 10 MB")],
    response: Response,
    if_match: IfMatchHeader = None,
) -> PromptOut:
    data = await read_upload(file, MENU_PROMPT_LIMITS)
    prompt = await service.upload_prompt(menu_id, file.filename, data, if_match)
    response.headers["Location"] = f"/v1/ivr-menus/{menu_id}/prompt"
    return _prompt_out(prompt)


@router.get(
    "/{menu_id}/prompt",
    response_class=Response,
    summary="Download the menu's prompt as the nodes play it",
    description=(
        "The converted recording or the rendered speech: 8 kHz mono 16-bit PCM WAV. "
        "404 when the menu plays a tone."
    ),
    responses={**WAV_RESPONSES, **error_responses(404)},
)
async def download_prompt(
    _: TenantMember,
    service: Service,
    menu_id: uuid.UUID,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    prompt = await service.prompt_audio(menu_id)
    return wav_response(prompt.audio, prompt.sha256, if_none_match)
