"""/v1/numbers: the tenant's phone numbers, provisioned from the platform's pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from vpbx_common.manifests import Number

from ..deps import Context, Paging, Session, TenantAdmin, TenantMember
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .schemas import NumberOut, NumberProvision, NumberUpdate
from .service import NumberService, number_etag

router = APIRouter(prefix="/v1/numbers", tags=["numbers"])


def number_service(session: Session, principal: TenantMember, context: Context) -> NumberService:
    return NumberService(session, principal, context.numbers, context.publisher, context.speech)


Service = Annotated[NumberService, Depends(number_service)]
NumberId = Annotated[
    str,
    Path(
        max_length=253,
        description="the Number resource's name",
        examples=["acme-74950000001"],
    ),
]


async def _out(service: NumberService, number: Number, response: Response) -> NumberOut:
    response.headers["ETag"] = number_etag(number)
    greetings = await service.greetings([number])
    return NumberOut.of(number, greetings.get(number.spec.number))


@router.get(
    "",
    response_model=Page[NumberOut],
    summary="List the tenant's numbers",
    responses=error_responses(503),
)
async def list_numbers(
    _: TenantMember,
    service: Service,
    paging: Paging,
    city: Annotated[str | None, Query(max_length=63, description="only this city")] = None,
    label: Annotated[
        str | None, Query(max_length=63, description="only numbers with this ad-channel label")
    ] = None,
) -> Page[NumberOut]:
    numbers, total = await service.list(paging, city, label)
    greetings = await service.greetings(numbers)
    return Page(
        items=[NumberOut.of(n, greetings.get(n.spec.number)) for n in numbers],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post(
    "",
    response_model=NumberOut,
    status_code=status.HTTP_201_CREATED,
    summary="Provision a number from the platform's pool",
    description=(
        "Takes a free pool number in `city` (matching `pattern`, or exactly `number`)"
        " and creates its Number resource. 409 `no-number-available` when none is free,"
        " 409 `plan-limit-reached` when the tenant's plan allows no more numbers."
    ),
    responses=error_responses(404, 409, 422, 503),
)
async def provision_number(
    _: TenantAdmin, service: Service, body: NumberProvision, response: Response
) -> NumberOut:
    number = await service.provision(body)
    response.headers["Location"] = f"/v1/numbers/{number.name}"
    return await _out(service, number, response)


@router.get(
    "/{number_id}",
    response_model=NumberOut,
    summary="Read a number",
    responses=error_responses(404, 503),
)
async def get_number(
    _: TenantMember, service: Service, number_id: NumberId, response: Response
) -> NumberOut:
    return await _out(service, await service.get(number_id), response)


@router.patch(
    "/{number_id}",
    response_model=NumberOut,
    summary="Set a number's entry route, ad-channel label, channel limit or greeting",
    responses=error_responses(404, 412, 422, 503),
)
async def update_number(
    _: TenantAdmin,
    service: Service,
    number_id: NumberId,
    body: NumberUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> NumberOut:
    return await _out(service, await service.update(number_id, body, if_match), response)


@router.delete(
    "/{number_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Release a number back to the platform's pool",
    responses=error_responses(404, 412, 503),
)
async def release_number(
    _: TenantAdmin, service: Service, number_id: NumberId, if_match: IfMatchHeader = None
) -> Response:
    await service.release(number_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
