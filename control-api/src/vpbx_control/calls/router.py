"""/v1/calls: the tenant's call records (CDRs), read from the CDR store."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from pydantic import AwareDatetime

from vpbx_common.cdr import Direction

from ..audio.serve import AUDIO_RESPONSES, AudioFormat
from ..deps import Audio, Context, Paging, Session, TenantManager, TenantMember
from ..errors import error_responses
from ..paging import Page
from ..targets import E164
from ..users.repository import UserRepository
from .errors import RecordingNotReady
from .placing import (
    AddToCall,
    CallPlacer,
    ConferenceStarted,
    MonitorRequest,
    MonitorStarted,
    PlaceCall,
    PlacedCall,
    TransferAction,
    TransferCall,
    TransferStarted,
    TransferStepDone,
)
from .schemas import CallDetailOut, CallOut, CallStatus
from .service import CallQuery, CallService

router = APIRouter(prefix="/v1/calls", tags=["calls"])

VISIBILITY = (
    "Supervisors and tenant admins see all of the tenant's calls; an agent only the calls "
    "their extension answered, was offered (rung, or offered by a queue) or placed. "
    "`recording` links the call's recording when there is one the caller may hear."
)


def call_service(session: Session, principal: TenantMember, context: Context) -> CallService:
    return CallService(session, principal, context.calls)


Service = Annotated[CallService, Depends(call_service)]


@router.get(
    "",
    response_model=Page[CallOut],
    summary="List calls, newest first",
    description="Calls that started in [`from`, `to`) (default: the last 7 days), newest "
    f"first. {VISIBILITY} 503 when the CDR store does not answer.",
    responses=error_responses(503),
)
async def list_calls(
    _: TenantMember,
    service: Service,
    paging: Paging,
    from_: Annotated[
        AwareDatetime | None,
        Query(
            alias="from",
            description="ISO 8601 instant with an offset (2025-11-22T09:00:00+03:00); "
            "calls that started then or later. Default: 7 days before `to`",
        ),
    ] = None,
    to: Annotated[
        AwareDatetime | None,
        Query(description="ISO 8601 instant; calls that started before it. Default: now"),
    ] = None,
    number: Annotated[
        E164 | None,
        Query(description="the tenant number dialled, in any common form (normalised to E.164)"),
    ] = None,
    user: Annotated[
        uuid.UUID | None,
        Query(description="a user id: calls the user's extension answered, was offered or placed"),
    ] = None,
    direction: Annotated[Direction | None, Query(description="only this direction")] = None,
    status: Annotated[
        CallStatus | None,
        Query(
            description="`answered` (somebody answered in person), `missed` (nobody did; "
            "voicemail included) or one end reason"
        ),
    ] = None,
    label: Annotated[
        str | None, Query(max_length=63, description="only calls to numbers with this ad channel")
    ] = None,
) -> Page[CallOut]:
    query = CallQuery(
        start=from_,
        end=to,
        number=number,
        user_id=user,
        direction=direction,
        status=status,
        label=label,
    )
    items, total = await service.page(query, paging)
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


CallId = Annotated[
    str, Path(min_length=1, max_length=1024, description="the call's SIP Call-ID ('/' as %2F)")
]
AudioFormatQuery = Annotated[
    AudioFormat,
    Query(
        alias="format",
        description="`ogg` (default): the stored Ogg/Opus; `wav`: decoded to 8 kHz 16-bit PCM "
        "WAV (stereo for calls)",
    ),
]
RangeHeader = Annotated[
    str | None,
    Header(alias="Range", description="one byte range, e.g. `bytes=0-1023` or `bytes=-100`"),
]
IfRangeHeader = Annotated[
    str | None, Header(alias="If-Range", description="present: the Range is ignored (200)")
]


# Declared before the catch-all /{call_id:path}, which would otherwise take
# ".../recording" as part of a call id.
def call_placer(principal: TenantMember, session: Session, context: Context) -> CallPlacer:
    return CallPlacer(
        principal,
        UserRepository(session, principal.tenant),
        context.numbers,
        context.redis,
        timeout_s=context.settings.command_timeout_s,
    )


Placer = Annotated[CallPlacer, Depends(call_placer)]


@router.post(
    "",
    status_code=202,
    response_model=PlacedCall,
    summary="Click-to-call: ring a user's phones, then the number",
    description="The user's registered SIP phones ring first (their mobile does not), "
    "showing the number about to be called; when the user answers, the number is called "
    "through the tenant's trunks with the caller ID chosen as for any call out (the "
    "tenant's number in or nearest to the callee's region, the user's own, or `caller_id`). "
    "202 once the user's node took the call: `call_id` names it in events, webhooks and "
    "`GET /v1/calls` (direction `outbound`, `caller` the user's extension, the route starts "
    "with `click-to-call`). 403 `outbound-refused` when the tenant's policy or caps refuse "
    "the number (the detail names the rule); 409 `user-unreachable` when the user has no "
    "registered phone; 422 naming the field; 503 when no media node answered.",
    responses=error_responses(403, 404, 409, 422, 503),
)
async def place_call(placer: Placer, body: PlaceCall) -> PlacedCall:
    return await placer.place(body)


@router.post(
    "/{call_id:path}/transfer",
    status_code=202,
    response_model=TransferStarted,
    summary="Transfer a live call (blind, or attended with `attended`)",
    description="The caller of a live call is handed to `target` (an extension, or a "
    "number through the trunks, which the outbound policy must allow): they hear music "
    "while it rings, and once it answers the person who had the call is let go. If the "
    "target does not answer within 30 s the caller stays with (or, if they left, is hung "
    "up by) the person who had the call. With `attended` the target rings for the person "
    "who had the call, who talks to them first while the caller stays on hold (status "
    "`consulting`); then `POST .../transfer/complete` or `.../transfer/cancel`; the person "
    "hanging up completes it too. The call's route records the transfer. Supervisors "
    "and tenant admins transfer any live call of the tenant, an agent only a call they are "
    "talking on. 404 `call-not-live` when no such call is in progress (or it is not the "
    "agent's); 409 `transfer-refused` (no such target, not reachable, another transfer "
    "going on, or refused by the policy); 503 when no media node answered.",
    responses=error_responses(404, 409, 503),
)
async def transfer_call(placer: Placer, call_id: CallId, body: TransferCall) -> TransferStarted:
    return await placer.transfer(call_id, body)


@router.post(
    "/{call_id:path}/transfer/{action}",
    status_code=202,
    response_model=TransferStepDone,
    summary="Complete or cancel an attended transfer",
    description="`complete`: the person who had the call is let go and the caller is put "
    "through to the consulted target (the call's route: `transferred`); `cancel`: the "
    "target is let go (or stops ringing) and the caller is back with the person who had "
    "the call (`cancelled`). Who may: as for the transfer. 404 `call-not-live`; 409 "
    "`transfer-refused` when no consultation goes on, or (complete) the target has not "
    "answered yet; 422 for another action; 503 when no media node answered.",
    responses=error_responses(404, 409, 503),
)
async def transfer_step(
    placer: Placer, call_id: CallId, action: TransferAction
) -> TransferStepDone:
    return await placer.transfer_step(call_id, action)


@router.post(
    "/{call_id:path}/monitor",
    status_code=202,
    response_model=MonitorStarted,
    summary="Listen to, whisper on or barge into a live call",
    description="The node with the call rings the supervisor's registered SIP phones "
    "(`from_user`, default the caller of the API; their mobile does not ring); when one "
    "answers, the supervisor joins the call in a mixer in `mode`: `listen` (nobody hears "
    "them), `whisper` (only the agent who answered does) or `barge` (both parties do), "
    "as with the feature codes. When the supervisor hangs up, the two parties are bridged "
    "directly again; if no phone answers within 30 s, or the call moved on meanwhile, the "
    "call goes on untouched. The call's route records the supervisor's steps. Supervisors "
    "and tenant admins only (403 `forbidden` for agents). 202 once the supervisor's phones "
    "ring; 404 `call-not-live` when no such call is in progress in the tenant; 409 "
    "`user-unreachable` when the supervisor has no registered phone, `monitor-refused` "
    "when the call is not connected or is busy (a transfer, a hold, another supervisor, a "
    "three-way conference); 422 naming the field (a bad `mode`, a `from_user` who is no "
    "supervisor); 503 when no media node answered.",
    responses=error_responses(403, 404, 409, 422, 503),
)
async def monitor_call(
    _: TenantManager, placer: Placer, call_id: CallId, body: MonitorRequest
) -> MonitorStarted:
    return await placer.monitor(call_id, body)


@router.post(
    "/{call_id:path}/conference",
    status_code=202,
    response_model=ConferenceStarted,
    summary="Add a third party to a live call (three-way conference)",
    description="The node with the call rings `to` (an extension's registered phones, or a "
    "number through the trunks, which the outbound policy and caps must allow, showing "
    "`caller_id` or the usual choice) while the two parties talk on. When it answers, the "
    "three meet in the node's mixer and each hears the other two. When one of them hangs "
    "up the other two go on: bridged directly again when the added party or the agent "
    "left (the added party then takes the agent's place), still through the mixer when "
    "the caller left. If nobody answers within 30 s the call goes on unchanged. The "
    "call's route records each step (subject `three-way`: who added whom, `joined`, "
    "`unanswered`, `refused`, `left`). Supervisors and tenant admins add to any live call "
    "of the tenant, an agent only to a call they are talking on. 404 `call-not-live` when "
    "no such call is in progress (or it is not the agent's); 409 `conference-refused` (no "
    "such target, not reachable, refused by the outbound policy, the call not connected or "
    "busy); 422 naming the field; 503 when no media node answered.",
    responses=error_responses(404, 409, 422, 503),
)
async def add_to_call(placer: Placer, call_id: CallId, body: AddToCall) -> ConferenceStarted:
    return await placer.conference(call_id, body)


@router.get(
    "/{call_id:path}/recording",
    response_class=Response,
    summary="Download a call's recording",
    description="The call's recording: Ogg/Opus as stored (stereo: the caller on the left, "
    "the agent who answered on the right) with HTTP Range (206, 416), or `format=wav` for "
    "8 kHz 16-bit PCM WAV (Range works on the WAV too). Supervisors and tenant admins hear "
    "every recording, an agent those of the calls they answered or placed. 404 "
    "`call-not-found` for another tenant's call or one the caller may not hear; 404 "
    "`recording-not-found` when the call was not recorded; 404 `recording-not-ready` "
    "(with Retry-After) when it was but the audio is not stored yet.",
    responses=AUDIO_RESPONSES,
)
async def get_recording(
    _: TenantMember,
    service: Service,
    audio: Audio,
    call_id: CallId,
    audio_format: AudioFormatQuery = AudioFormat.OGG,
    range_header: RangeHeader = None,
    if_range: IfRangeHeader = None,
) -> Response:
    key = await service.recording_key(call_id)
    return await audio.respond(
        key,
        audio_format=audio_format,
        range_header=range_header,
        if_range=if_range,
        filename=f"call-{key.rsplit('/', 1)[-1].removesuffix('.ogg')}",
        missing=RecordingNotReady,
    )


@router.get(
    "/{call_id:path}",
    response_model=CallDetailOut,
    summary="Read a call with its route",
    description=f"The call and how the routing engine handled it. {VISIBILITY} Another "
    "tenant's call, or one an agent may not see, is 404.",
    responses=error_responses(404, 503),
)
async def get_call(
    _: TenantMember,
    service: Service,
    call_id: CallId,
) -> CallDetailOut:
    return await service.get(call_id)
