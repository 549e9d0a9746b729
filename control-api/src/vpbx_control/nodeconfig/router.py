"""/internal/v1/node-config: the compiled config a media node runs on (service token only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Response

from vpbx_common.manifests import DNS_LABEL
from vpbx_common.nodeconfig import NodeConfig

from ..deps import Context, MediaNode, Session
from ..errors import NotFound, error_responses
from ..ivr.models import PromptRow
from .service import NodeConfigService

router = APIRouter(prefix="/internal/v1", tags=["internal"])


def node_config_service(session: Session, context: Context) -> NodeConfigService:
    return NodeConfigService(session, context.numbers)


Service = Annotated[NodeConfigService, Depends(node_config_service)]


class PromptAudioNotFound(NotFound):
    error_id = "prompt-not-found"


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison; ``*`` matches any current representation."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags


_RESPONSES: dict[int | str, dict[str, Any]] = {
    **error_responses(401, 403, 404, 503),
    304: {"description": "unchanged: the If-None-Match ETag is the current version"},
}


@router.get(
    "/node-config/{tenant}/{city}",
    response_model=NodeConfig,
    summary="The compiled config of a tenant's media node in one city",
    description=(
        "Users with their extensions, devices' digest HA1s, groups with ordered members, "
        "schedules, IVR menus, route plans and the tenant's numbers with resolved entries. "
        "The ETag is the config's content version; send it back in If-None-Match to get "
        "304 while nothing changed. Media nodes fetch this on start, on every invalidation "
        "on Redis (`vpbx:config:<tenant>`) and on a slow poll."
    ),
    responses=_RESPONSES,
)
async def get_node_config(
    _: MediaNode,
    service: Service,
    context: Context,
    tenant: Annotated[str, Path(max_length=63, pattern=DNS_LABEL.pattern, examples=["acme"])],
    city: Annotated[str, Path(max_length=63, pattern=DNS_LABEL.pattern, examples=["msk"])],
    if_none_match: Annotated[
        str | None, Header(alias="If-None-Match", description="the ETag of the config held")
    ] = None,
) -> Response:
    compiled = await context.node_configs.get(tenant, city, lambda: service.compile(tenant, city))
    headers = {"ETag": compiled.etag, "Cache-Control": "no-cache"}
    if etag_matches(if_none_match, compiled.etag):
        return Response(status_code=304, headers=headers)
    return Response(compiled.body, media_type="application/json", headers=headers)


@router.get(
    "/prompts/{tenant}/{prompt_id}",
    summary="The audio of one of a tenant's prompts, as media nodes play it",
    description=(
        "8 kHz mono 16-bit PCM WAV: an uploaded prompt or speech rendered from text. "
        "The id names immutable audio (a new upload or text is a new prompt), so nodes "
        "cache it for as long as they like."
    ),
    responses={
        **error_responses(401, 403, 404),
        200: {"content": {"audio/wav": {}}, "description": "the WAV"},
    },
    response_class=Response,
)
async def get_prompt_audio(
    _: MediaNode,
    session: Session,
    tenant: Annotated[str, Path(max_length=63, pattern=DNS_LABEL.pattern, examples=["acme"])],
    prompt_id: uuid.UUID,
) -> Response:
    row = await session.get(PromptRow, prompt_id)
    if row is None or row.tenant_id != tenant:
        raise PromptAudioNotFound(f"tenant {tenant!r} has no prompt {prompt_id}")
    return Response(
        row.audio,
        media_type="audio/wav",
        headers={"ETag": f'"{row.sha256}"', "Cache-Control": "private, max-age=31536000"},
    )
