from __future__ import annotations

from ..errors import Conflict, FieldProblem


class _FieldConflict(Conflict):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, details=[FieldProblem(field=field, message=message)])


class TenantExists(_FieldConflict):
    error_id = "tenant-exists"

    def __init__(self, tenant: str) -> None:
        super().__init__(f"a tenant named {tenant!r} already exists", "body.id")


class SipDomainTaken(_FieldConflict):
    error_id = "sip-domain-taken"

    def __init__(self, domain: str) -> None:
        super().__init__(f"another tenant uses the SIP domain {domain}", "body.sip_domain")


class EmailTaken(_FieldConflict):
    error_id = "email-taken"

    def __init__(self, field: str) -> None:
        super().__init__("a user with this e-mail address already exists", field)


class TenantHasNumbers(Conflict):
    error_id = "tenant-has-numbers"


class CityInUse(_FieldConflict):
    error_id = "city-in-use"


class NumberInPool(_FieldConflict):
    error_id = "number-in-pool"


class NumberInUse(_FieldConflict):
    error_id = "number-in-use"
