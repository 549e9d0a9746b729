"""The control API's copy of a tenant: the Tenant custom resource plus its plan limits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Integer, String, false, func
from sqlalchemy.orm import Mapped, mapped_column

from ..db.base import Base, utcnow


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)  # the Tenant's name
    display_name: Mapped[str] = mapped_column(String(200))
    sip_domain: Mapped[str] = mapped_column(String(253), unique=True)
    cities: Mapped[list[Any]] = mapped_column(default=list)
    # Plan limits; 0 means unlimited.
    seats: Mapped[int] = mapped_column(Integer, default=0)
    numbers: Mapped[int] = mapped_column(Integer, default=0)
    concurrent_calls: Mapped[int] = mapped_column(Integer, default=0)
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    # The Tenant's spec.recording.policy (vpbx_common.manifests.RecordingPolicy values): the
    # nodes record per it unless a number or a user says otherwise.
    recording_policy: Mapped[str] = mapped_column(String(16), default="off", server_default="off")
    # The Tenant's spec.outbound (vpbx_common.manifests.OutboundPolicy): what its people may
    # dial out and the caps that bound what a stolen SIP password can cost (migration 0012).
    outbound_country: Mapped[str] = mapped_column(String(2), default="RU", server_default="RU")
    outbound_international: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    outbound_premium: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    outbound_max_concurrent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    outbound_max_minutes_per_day: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0"
    )
    # E.164, one of the tenant's numbers; None: the tenant's first number.
    outbound_default_caller_id: Mapped[str | None] = mapped_column(String(16), default=None)
    # The codes the tenant's phones dial for pickup, park and monitoring
    # (vpbx_common.nodeconfig.FeatureCodesEntry fields); None: the platform's defaults.
    feature_codes: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(
        default=utcnow, server_default=func.current_timestamp()
    )
