"""Response documents of /v1/reports: what vpbx_common.analytics' results give (to_json()),
documented. The fields the issue fixes are required; more may come (extra fields pass)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class ReportOut(BaseModel):
    model_config = ConfigDict(extra="allow")


class PeriodOut(BaseModel):
    from_: str = Field(alias="from", examples=["2026-12-01"])
    to: str = Field(examples=["2026-12-07"])
    tz: str = Field(examples=["Europe/Moscow"])
    start_ms: int = Field(description="the first local midnight, epoch ms")
    end_ms: int = Field(description="the local midnight after the last day, epoch ms")


class CallsRowOut(ReportOut):
    key: str = Field(
        description="day 'YYYY-MM-DD', week (its Monday) 'YYYY-MM-DD', month 'YYYY-MM', hour "
        "'00'..'23', weekday '1'..'7' (Monday 1), user (extension), number, label or group; "
        "'total' in `totals`",
        examples=["2026-12-01"],
    )
    total: int
    answered: int
    missed: int = Field(description="not answered by a person (voicemail included)")
    missed_not_called_back: int = Field(
        description="missed inbound calls from a real number that no later answered call "
        "(in or out, up to now) connected"
    )
    answer_p50_s: float | None = Field(description="median start-to-answer of answered calls")
    answer_p90_s: float | None
    talk_s: float
    missed_callable: int | None = None
    called_back: int | None = None
    callback_p50_s: float | None = None
    answered_within_sl: int | None = None
    service_level: float | None = Field(
        default=None, description="answered within `service_level_s` / total"
    )
    abandoned_in_queue: int | None = None
    abandoned_in_ivr: int | None = None
    abandoned_in_ring: int | None = None
    voicemail: int | None = None
    queued: int | None = None
    queue_wait_s: float | None = None


class CallsReportOut(ReportOut):
    period: PeriodOut
    group_by: str = Field(examples=["day"])
    direction: str = Field(examples=["inbound"])
    service_level_s: int = Field(examples=[20])
    rows: list[CallsRowOut]
    totals: CallsRowOut


class ClientsReportOut(ReportOut):
    period: PeriodOut
    total: int = Field(description="inbound calls of the period")
    existing: int = Field(description="...from a contact the CRM knew at call time")
    unknown: int = Field(description="...from anyone else")
    vip: int = Field(description="...from a VIP contact")
    by_category: dict[str, int] = Field(description="existing clients' calls per category")


Money = Annotated[
    Decimal,
    Field(description="a string with two decimals, in the tenant's spend currency"),
]


class FunnelOut(ReportOut):
    first_calls: int = Field(description="first-time callers")
    deals_created: int
    deals_won: int
    first_call_to_deal: float | None = Field(description="deals created / first calls")
    deal_to_won: float | None = Field(description="deals won / deals created")


class ChannelRowOut(ReportOut):
    label: str = Field(examples=["yandex-direct"], description="'' for numbers with no label")
    calls: int = Field(description="inbound calls to the tenant's numbers with the label")
    first_time_callers: int = Field(description="callers never heard before the period")
    new_contacts: int | None = None
    deals_created: int | None = None
    deals_won: int
    won_amount: Money | None = None
    won_amounts: dict[str, Decimal] | None = Field(default=None, description="per currency")
    spend: Money | None = Field(
        description="the channel's spend prorated over the period (/v1/ad-channels)"
    )
    cost_per_call: Money | None = Field(description="null when there were no calls")
    cost_per_new_client: Money | None = Field(
        default=None, description="spend / first-time callers; null when there were none"
    )
    cost_per_won_deal: Money | None = Field(description="null when no deal was won")
    funnel: FunnelOut | None = None


class ChannelsReportOut(ReportOut):
    period: PeriodOut
    currency: str = Field(examples=["RUB"], description="the currency of the money figures")
    rows: list[ChannelRowOut]
    totals: ChannelRowOut | None = None


class ManagerRowOut(ReportOut):
    key: str = Field(description="the user's id, or an extension no user has now")
    user_id: str = Field(description="the tenant's user; '' for an extension no user has")
    name: str | None = Field(description="the user's name; null without a user")
    extensions: list[str] | None = None
    offered: int | None = None
    answered: int | None = None
    missed: int | None = None
    talk_s: float | None = None
    outbound: int | None = None
    outbound_answered: int | None = None
    outbound_talk_s: float | None = None
    clients_brought: int | None = None
    deals_created: int | None = None
    deals_moved: int | None = None
    deals_won: int | None = None
    won_amounts: dict[str, Decimal] | None = None
    deals_closed: int | None = None


class ManagersReportOut(ReportOut):
    period: PeriodOut
    rows: list[ManagerRowOut]
