from __future__ import annotations

from ..errors import NameTaken


class ScheduleNameTaken(NameTaken):
    error_id = "schedule-name-taken"
    what = "a schedule"
