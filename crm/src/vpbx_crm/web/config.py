"""/config.json: what the agent workspace needs to know before anybody logs in."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from ..deps import Context, Public

router = APIRouter(tags=["workspace"])


class WorkspaceConfig(BaseModel):
    control_url: str = Field(
        description="the control API as the browser reaches it: login (POST /v1/auth/login), "
        "recordings and voice messages",
        examples=["http://127.0.0.1:8000"],
    )
    default_country: str = Field(
        description="numbers typed without a country code are of this country (ISO 3166)",
        examples=["RU"],
    )
    sip_ws_url: str = Field(
        default="",
        description="the SIP over WebSocket address the browser softphone registers at; "
        "'' when this installation has none (the softphone is hidden)",
        examples=["wss://sip.example.com:5066"],
    )
    live_path: str = Field(
        default="/v1/live",
        description="the CRM's WebSocket of screen pops, call events and agent states",
    )


@router.get(
    "/config.json",
    response_model=WorkspaceConfig,
    summary="The agent workspace's settings (public: no secrets)",
)
async def workspace_config(context: Context, _: Public, response: Response) -> WorkspaceConfig:
    response.headers["Cache-Control"] = "no-cache"
    return WorkspaceConfig(
        control_url=context.settings.browser_control_url,
        default_country=context.settings.default_country,
        sip_ws_url=context.settings.sip_ws_url,
    )
