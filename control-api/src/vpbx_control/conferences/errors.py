from __future__ import annotations

from ..errors import UsedByNumber


class RoomIsNumberEntry(UsedByNumber):
    error_id = "conference-room-used-by-number"
    label = "conference room"
