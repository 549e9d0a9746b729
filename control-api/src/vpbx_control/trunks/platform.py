"""The platform's trunks (vpbx_common.platformtrunks, shared with the operator)."""

from __future__ import annotations

from vpbx_common.platformtrunks import PlatformTrunks, PlatformTrunksError

__all__ = ["PlatformTrunks", "PlatformTrunksError"]
