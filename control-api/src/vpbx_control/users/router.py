"""/v1/users: people, their extensions and presence, and their SIP devices."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from vpbx_common.pbx import Presence

from ..auth.principal import Role
from ..deps import Context, Paging, Session, TenantAdmin, TenantMember
from ..errors import error_responses
from ..paging import IfMatchHeader, Page
from .models import DeviceRow, UserRow
from .schemas import (
    BrowserDeviceCreate,
    DeviceCreate,
    DeviceCredentials,
    DeviceOut,
    PresenceChange,
    SelfUpdate,
    UserCreate,
    UserOut,
    UserUpdate,
)
from .service import MAX_BROWSER_DEVICES, IssuedDevice, UserFilters, UserService

router = APIRouter(prefix="/v1/users", tags=["users"])


def user_service(session: Session, principal: TenantMember, context: Context) -> UserService:
    return UserService(session, principal, context)


Service = Annotated[UserService, Depends(user_service)]


def _out(row: UserRow, response: Response | None = None) -> UserOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return UserOut.of(row)


def _device(row: DeviceRow, response: Response | None = None) -> DeviceOut:
    if response is not None:
        response.headers["ETag"] = row.etag()
    return DeviceOut.model_validate(row, from_attributes=True)


def _credentials(issued: IssuedDevice, response: Response) -> DeviceCredentials:
    response.headers["ETag"] = issued.device.etag()
    # The password is in this body only: no cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return DeviceCredentials(
        **_device(issued.device).model_dump(),
        password=issued.password,
        sip_domain=issued.sip_domain,
    )


# ---- the collection


@router.get("", response_model=Page[UserOut], summary="List users")
async def list_users(
    _: TenantMember,
    service: Service,
    paging: Paging,
    role: Annotated[Role | None, Query(description="only this role")] = None,
    city: Annotated[str | None, Query(max_length=63, description="only this city")] = None,
    extension: Annotated[
        str | None, Query(max_length=16, description="the user with this extension")
    ] = None,
    presence: Annotated[Presence | None, Query(description="only this presence")] = None,
    q: Annotated[str | None, Query(max_length=200, description="name or e-mail contains")] = None,
) -> Page[UserOut]:
    filters = UserFilters(role=role, city=city, extension=extension, presence=presence, q=q)
    rows, total = await service.list_users(paging, filters)
    return Page(
        items=[_out(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a user",
    responses=error_responses(404, 409, 422),
)
async def create_user(
    _: TenantAdmin, service: Service, body: UserCreate, response: Response
) -> UserOut:
    row = await service.create(body)
    response.headers["Location"] = f"/v1/users/{row.id}"
    return _out(row, response)


# ---- the caller themself (declared before /{user_id})


@router.get(
    "/me",
    response_model=UserOut,
    summary="The calling user's own profile",
    responses=error_responses(404),
)
async def get_me(_: TenantMember, service: Service, response: Response) -> UserOut:
    return _out(await service.me(), response)


@router.patch(
    "/me",
    response_model=UserOut,
    summary="Change one's own presence, personal settings, mobile or password",
    description="A new password needs `current_password` and signs out every session.",
    responses=error_responses(403, 404, 412, 422, 429),
)
async def update_me(
    _: TenantMember,
    service: Service,
    body: SelfUpdate,
    request: Request,
    response: Response,
    if_match: IfMatchHeader = None,
) -> UserOut:
    address = request.client.host if request.client else "unknown"
    return _out(await service.update_me(body, if_match, address), response)


@router.post(
    "/me/devices",
    response_model=DeviceCredentials,
    status_code=status.HTTP_201_CREATED,
    summary="Add one's own browser softphone; its password is shown in this response only",
    description="Any user with an extension (`kind` must be `browser`). A user holds at most "
    f"{MAX_BROWSER_DEVICES} browser devices: adding one more deletes the oldest of them. "
    "The user name is `<extension>-web[-n]`, registered at the tenant's SIP domain.",
    responses=error_responses(404, 422),
)
async def add_my_browser_device(
    _: TenantMember, service: Service, body: BrowserDeviceCreate, response: Response
) -> DeviceCredentials:
    issued = await service.add_browser_device(body)
    response.headers["Location"] = f"/v1/users/{issued.device.user_id}/devices/{issued.device.id}"
    return _credentials(issued, response)


# ---- one user


@router.get(
    "/{user_id}", response_model=UserOut, summary="Read a user", responses=error_responses(404)
)
async def get_user(
    _: TenantMember, service: Service, user_id: uuid.UUID, response: Response
) -> UserOut:
    return _out(await service.get(user_id), response)


@router.patch(
    "/{user_id}",
    response_model=UserOut,
    summary="Change a user",
    description="A new role or password signs the user out of every session.",
    responses=error_responses(404, 409, 412, 422),
)
async def update_user(
    _: TenantAdmin,
    service: Service,
    user_id: uuid.UUID,
    body: UserUpdate,
    response: Response,
    if_match: IfMatchHeader = None,
) -> UserOut:
    return _out(await service.update(user_id, body, if_match), response)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a user no route, menu or group overflow uses",
    description="The user's group memberships and SIP devices go with them.",
    responses=error_responses(404, 409, 412),
)
async def delete_user(
    _: TenantAdmin, service: Service, user_id: uuid.UUID, if_match: IfMatchHeader = None
) -> Response:
    await service.delete(user_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


_PRESENCE_DOC = "The user themself, a supervisor or a tenant admin."


@router.put(
    "/{user_id}/presence",
    response_model=UserOut,
    summary="Set a user's presence",
    description=_PRESENCE_DOC,
    responses=error_responses(403, 404, 412, 422),
)
async def put_presence(
    _: TenantMember,
    service: Service,
    user_id: uuid.UUID,
    body: PresenceChange,
    response: Response,
    if_match: IfMatchHeader = None,
) -> UserOut:
    return _out(await service.set_presence(user_id, body.presence, if_match), response)


@router.patch(
    "/{user_id}/presence",
    response_model=UserOut,
    summary="Set a user's presence (same as PUT)",
    description=_PRESENCE_DOC,
    responses=error_responses(403, 404, 412, 422),
)
async def patch_presence(
    _: TenantMember,
    service: Service,
    user_id: uuid.UUID,
    body: PresenceChange,
    response: Response,
    if_match: IfMatchHeader = None,
) -> UserOut:
    return _out(await service.set_presence(user_id, body.presence, if_match), response)


# ---- SIP devices


@router.get(
    "/{user_id}/devices",
    response_model=Page[DeviceOut],
    summary="List a user's SIP devices",
    description="A tenant admin, or the user themself. Passwords are never listed.",
    responses=error_responses(403, 404),
)
async def list_devices(
    _: TenantMember, service: Service, paging: Paging, user_id: uuid.UUID
) -> Page[DeviceOut]:
    rows, total = await service.list_devices(user_id, paging)
    return Page(
        items=[_device(r) for r in rows], total=total, limit=paging.limit, offset=paging.offset
    )


@router.post(
    "/{user_id}/devices",
    response_model=DeviceCredentials,
    status_code=status.HTTP_201_CREATED,
    summary="Add a SIP device; its generated password is shown in this response only",
    responses=error_responses(404, 409, 422),
)
async def create_device(
    _: TenantAdmin, service: Service, user_id: uuid.UUID, body: DeviceCreate, response: Response
) -> DeviceCredentials:
    issued = await service.create_device(user_id, body)
    response.headers["Location"] = f"/v1/users/{user_id}/devices/{issued.device.id}"
    return _credentials(issued, response)


@router.get(
    "/{user_id}/devices/{device_id}",
    response_model=DeviceOut,
    summary="Read a SIP device (without its password)",
    responses=error_responses(403, 404),
)
async def get_device(
    _: TenantMember,
    service: Service,
    user_id: uuid.UUID,
    device_id: uuid.UUID,
    response: Response,
) -> DeviceOut:
    return _device(await service.get_device(user_id, device_id), response)


@router.post(
    "/{user_id}/devices/{device_id}/rotate",
    response_model=DeviceCredentials,
    summary="Replace a SIP device's password; the new one is shown in this response only",
    responses=error_responses(404, 412),
)
async def rotate_device(
    _: TenantAdmin,
    service: Service,
    user_id: uuid.UUID,
    device_id: uuid.UUID,
    response: Response,
    if_match: IfMatchHeader = None,
) -> DeviceCredentials:
    return _credentials(await service.rotate_device(user_id, device_id, if_match), response)


@router.delete(
    "/{user_id}/devices/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a SIP device",
    responses=error_responses(404, 412),
)
async def delete_device(
    _: TenantAdmin,
    service: Service,
    user_id: uuid.UUID,
    device_id: uuid.UUID,
    if_match: IfMatchHeader = None,
) -> Response:
    await service.delete_device(user_id, device_id, if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
