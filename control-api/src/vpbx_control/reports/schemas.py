"""Response documents of /v1/reports: what vpbx_common.analytics' results give (to_json()),
documented. The fields the issue fixes are required; more may come (extra fields pass)."""

from __future__ import annotations

from decimal import Decimal

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


class ChannelRowOut(ReportOut):
    label: str = Field(examples=["yandex-direct"])
    calls: int
    first_time_callers: int
    deals_won: int
    spend: Decimal | None = Field(
        description="the channel's spend prorated over the period (/v1/ad-channels)"
    )
    cost_per_call: Decimal | None = Field(description="null when there were no calls")
    cost_per_won_deal: Decimal | None = Field(description="null when no deal was won")


class ChannelsReportOut(ReportOut):
    period: PeriodOut
    currency: str = Field(examples=["RUB"], description="the currency of the spend figures")
    rows: list[ChannelRowOut]


class ManagerRowOut(ReportOut):
    key: str = Field(description="the extension", examples=["101"])
    user_id: str | None = Field(description="the tenant's user with that extension now")
    name: str | None = Field(description="that user's name")


class ManagersReportOut(ReportOut):
    period: PeriodOut
    rows: list[ManagerRowOut]
