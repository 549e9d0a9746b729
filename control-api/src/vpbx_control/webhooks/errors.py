from __future__ import annotations

from ..errors import Conflict, NotFound


class WebhookLimitReached(Conflict):
    error_id = "webhook-limit-reached"

    def __init__(self, limit: int) -> None:
        super().__init__(f"a tenant may have at most {limit} webhooks; delete one first")


class DeliveryNotFound(NotFound):
    error_id = "delivery-not-found"

    def __init__(self) -> None:
        super().__init__("this webhook has no such delivery")
