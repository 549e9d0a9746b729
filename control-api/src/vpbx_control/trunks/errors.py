from __future__ import annotations

from ..errors import Conflict, NameTaken


class TrunkNameTaken(NameTaken):
    error_id = "trunk-name-taken"
    what = "a trunk"


class TrunkLimitReached(Conflict):
    error_id = "trunk-limit-reached"

    def __init__(self, limit: int) -> None:
        super().__init__(f"a tenant may have at most {limit} trunks; delete one first")
