"""/internal/v1/node-config: the compiled config a media node runs on (service token only)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Response

from vpbx_common.manifests import DNS_LABEL
from vpbx_common.nodeconfig import NodeConfig

from ..deps import Context, MediaNode, Session
from ..errors import NotFound, Unavailable, error_responses
from ..ivr.models import PromptRow
from ..ivr.speech import SpeechFailedError, SpeechUnavailableError, UnspeakableTextError
from .phrases import UnknownPhraseError
from .service import NodeConfigService

router = APIRouter(prefix="/internal/v1", tags=["internal"])


def node_config_service(session: Session, context: Context) -> NodeConfigService:
    return NodeConfigService(session, context.numbers, context.platform_trunks.current())


Service = Annotated[NodeConfigService, Depends(node_config_service)]


class PromptAudioNotFound(NotFound):
    error_id = "prompt-not-found"


class PhraseNotFound(NotFound):
    error_id = "phrase-not-found"


class PhraseUnavailable(Unavailable):
    """espeak-ng is missing or failed: the node plays a tone and asks again later."""

    error_id = "speech-unavailable"


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
        "schedules, IVR menus, route plans and the tenant's numbers with resolved entries; "
        "the trunks calls go out through (the tenant's own, then the platform's, each by "
        "priority, with their passwords in clear: the node answers the carriers' digest "
        "challenges) and the tenant's outbound policy. "
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


@router.get(
    "/speech/{language}/{phrase}",
    summary="One of the platform's spoken phrases, as media nodes play it",
    description=(
        "8 kHz mono 16-bit PCM WAV of one phrase of the fixed vocabulary the nodes build "
        "queue announcements from (`vpbx_common.speech`): `you-are-number`, the numbers "
        "`1`..`99`, `expected-wait`, `minutes-1`..`minutes-99` (Russian in the right "
        "grammatical form), `less-than-a-minute`, `please-hold`; in `ru` or `en`. "
        "Rendered with espeak-ng on first request and kept on disk "
        "(`VPBX_SPEECH_CACHE_DIR`); the audio of a phrase never changes, so nodes cache it."
    ),
    responses={
        **error_responses(401, 403, 404, 503),
        200: {"content": {"audio/wav": {}}, "description": "the WAV"},
    },
    response_class=Response,
)
async def get_spoken_phrase(
    _: MediaNode,
    context: Context,
    language: Annotated[str, Path(max_length=8, examples=["ru", "en"])],
    phrase: Annotated[str, Path(max_length=40, examples=["you-are-number", "3", "minutes-2"])],
) -> Response:
    try:
        wav = await context.phrases.wav(language, phrase)
    except UnknownPhraseError as exc:
        raise PhraseNotFound(str(exc)) from exc
    except (SpeechUnavailableError, SpeechFailedError, UnspeakableTextError) as exc:
        raise PhraseUnavailable(f"phrase {language}/{phrase}: {exc}") from exc
    return Response(
        wav, media_type="audio/wav", headers={"Cache-Control": "private, max-age=31536000"}
    )
