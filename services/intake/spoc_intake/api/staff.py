"""/api/v1/staff: the desk's admins manage staff accounts; a member changes their own password
and availability."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel

from spoc_intake.api.deps import Container, CurrentCaller
from spoc_intake.callers import Caller
from spoc_intake.staff import (
    Availability,
    AvailabilitySet,
    PasswordSet,
    StaffCreate,
    StaffProfile,
    StaffUpdate,
)
from spoc_platform.openapi import error_response
from spoc_platform.web import ApiError, SharedPathRoute

router = APIRouter(prefix="/api/v1/staff", tags=["staff"], route_class=SharedPathRoute)

StaffIdPath = Annotated[str, Path(max_length=64, description="e.g. sara")]

UNAUTHENTICATED = "Not signed in, or a bearer token that is not valid; code `unauthenticated`"
_ADMIN_ONLY: dict[int | str, dict[str, Any]] = {
    401: error_response(401, UNAUTHENTICATED),
    403: error_response(
        403,
        "Not an admin (code `forbidden`), or sent from another site's page (`cross_site_request`)",
    ),
}


class StaffRead(BaseModel):
    id: str
    name: str
    email: str
    role: str
    groups: list[str]
    active: bool
    # On shift for new work (`available`), `away` for a while, or `off`.
    availability: Availability
    # Whether the person can sign in with a password yet.
    has_password: bool
    # Set while the account is locked after repeated failed sign-ins.
    locked_until: datetime | None

    @classmethod
    def of(cls, profile: StaffProfile) -> StaffRead:
        return cls(**profile.__dict__)


class StaffList(BaseModel):
    items: list[StaffRead]


def require_admin(caller: Caller) -> None:
    if caller.is_anonymous:
        raise ApiError(401, "unauthenticated", "sign in as an admin first")
    if caller.role != "admin":
        raise ApiError(403, "forbidden", "only an admin manages staff accounts")


@router.get("", response_model=StaffList, responses=_ADMIN_ONLY, summary="List staff accounts")
async def list_staff(container: Container, caller: CurrentCaller) -> StaffList:
    require_admin(caller)
    return StaffList(items=[StaffRead.of(p) for p in await container.staff.list()])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StaffRead,
    responses={
        **_ADMIN_ONLY,
        409: error_response(
            409, "The id (`staff_exists`) or the address (`email_taken`) is already used"
        ),
        422: error_response(
            422, "Invalid request (`validation_error`) or a weak password (`weak_password`)"
        ),
    },
    summary="Create a staff account",
)
async def create_staff(data: StaffCreate, container: Container, caller: CurrentCaller) -> StaffRead:
    require_admin(caller)
    return StaffRead.of(await container.staff.create(data))


@router.patch(
    "/{staff_id}",
    response_model=StaffRead,
    responses={
        **_ADMIN_ONLY,
        404: error_response(404, "No such staff account; code `staff_not_found`"),
        409: error_response(
            409,
            "The address is another account's (`email_taken`), or the change would leave the "
            "desk without an active admin (`last_admin`)",
        ),
    },
    summary="Change a staff account's name, address, role, groups, active flag or availability",
)
async def update_staff(
    staff_id: StaffIdPath, data: StaffUpdate, container: Container, caller: CurrentCaller
) -> StaffRead:
    require_admin(caller)
    return StaffRead.of(await container.staff.update(staff_id, data))


@router.put(
    "/{staff_id}/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        401: error_response(401, UNAUTHENTICATED),
        403: error_response(
            403,
            "Neither an admin nor the account's owner (`forbidden`), a wrong current password "
            "(`wrong_password`), or sent from another site's page (`cross_site_request`)",
        ),
        404: error_response(404, "No such staff account; code `staff_not_found`"),
        422: error_response(
            422,
            "Invalid request (`validation_error`), a weak password (`weak_password`), or the "
            "current password missing for one's own (`current_password_required`)",
        ),
    },
    summary="Set a password: an admin for anyone, a member their own (with the current one)",
)
async def set_staff_password(
    staff_id: StaffIdPath, data: PasswordSet, container: Container, caller: CurrentCaller
) -> Response:
    if caller.is_anonymous:
        raise ApiError(401, "unauthenticated", "sign in first")
    await container.staff.set_password(staff_id, data, caller=caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/{staff_id}/availability",
    response_model=StaffRead,
    responses={
        401: error_response(401, UNAUTHENTICATED),
        403: error_response(
            403,
            "Neither an admin nor the account's owner (`forbidden`), or sent from another "
            "site's page (`cross_site_request`)",
        ),
        404: error_response(404, "No such staff account; code `staff_not_found`"),
    },
    summary="Set an availability (available, away, off): a member their own, an admin anyone's",
)
async def set_staff_availability(
    staff_id: StaffIdPath, data: AvailabilitySet, container: Container, caller: CurrentCaller
) -> StaffRead:
    if caller.is_anonymous:
        raise ApiError(401, "unauthenticated", "sign in first")
    return StaffRead.of(await container.staff.set_availability(staff_id, data, caller=caller))
