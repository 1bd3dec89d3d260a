"""Routing's desk configuration: the view of the section in force (staff), and the admin API
to check a section (a dry run), set it at run time and list the versions set."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, create_model
from sqlalchemy.ext.asyncio import AsyncEngine

from spoc_platform.admin import admin_guard
from spoc_platform.openapi import error_response, error_responses
from spoc_platform.web import SharedPathRoute
from spoc_routing import desk_versions
from spoc_routing.desk import RoutingDesk
from spoc_routing.desk_versions import DeskHolder, DeskSummary, DeskVersionList, DeskVersionRead

PREFIX = "/api/v1/routing"

# The routing section as the desk file's `routing:` mapping has it, as JSON. An invalid one is a
# 422 with one detail per problem, at its path (`groups.1.agents.0.capacity`; the cross-checks'
# as they name it, `rules[0] (vip)`: desk.DeskProblems, spoc_platform.web).
Section = Annotated[
    RoutingDesk, Body(description="The `routing:` section of the desk file, as JSON")
]


# The section in force as GET /desk shows it: the section's own fields, and `version`, the digest
# its decisions record. A copy of RoutingDesk's fields, not a subclass: there `version` is the
# digest itself, computed, not a field.
DeskInForce = create_model(
    "DeskInForce",
    __config__=ConfigDict(frozen=True),
    version=(str, ...),
    **{name: (info.annotation, info) for name, info in RoutingDesk.model_fields.items()},  # type: ignore[call-overload]
)


class DeskCheck(BaseModel):
    valid: bool
    # The digest decisions would record with this section in force.
    version: str
    summary: DeskSummary


class DeskSet(DeskCheck):
    # Its place among the versions set (GET /desk/versions).
    seq: int


def desk_router(desks: DeskHolder) -> APIRouter:
    # GET and PUT /desk are in two routers: a wrong method is told both (Allow).
    router = APIRouter(prefix=PREFIX, tags=["routing"], route_class=SharedPathRoute)

    @router.get("/desk", summary="The matrix, groups, agents and rules in force, and their version")
    async def get_routing_desk() -> DeskInForce:
        desk = desks.current
        return DeskInForce.model_validate({**desk.model_dump(), "version": desk.version})

    return router


def desk_admin_router(desks: DeskHolder, engine: AsyncEngine, token: str) -> APIRouter:
    """Admin only, as the admin API is (spoc_platform.admin): the configured admin token or an
    admin's own `spoc_` token; another role's token is a 403."""
    router = APIRouter(
        prefix=PREFIX,
        tags=["routing"],
        route_class=SharedPathRoute,
        responses={
            401: error_response(
                401,
                headers={"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
            ),
            403: error_response(403, "A live bearer token whose role may not change the desk"),
            **error_responses(422, 503),
        },
    )
    guard = admin_guard(token)

    @router.post(
        "/desk/validate",
        summary="Check a routing section without putting it in force (a dry run)",
        dependencies=[Depends(guard)],
    )
    async def validate_routing_desk(section: Section) -> DeskCheck:
        desk = section
        return DeskCheck(valid=True, version=desk.version, summary=desk_versions.summary(desk))

    @router.put("/desk", summary="Put a routing section in force on every replica, as a version")
    async def put_routing_desk(
        section: Section, changed_by: Annotated[str, Depends(guard)]
    ) -> DeskSet:
        desk = section
        async with engine.begin() as conn:
            seq = await desk_versions.store(conn, desk, changed_by)
        # In force here at once; the other replicas within their refresh interval.
        await desks.refresh(engine)
        return DeskSet(
            valid=True, version=desk.version, summary=desk_versions.summary(desk), seq=seq
        )

    @router.get(
        "/desk/versions",
        summary="The routing sections set at run time, newest first",
        dependencies=[Depends(guard)],
    )
    async def list_routing_desk_versions(
        limit: Annotated[int, Query(ge=1, le=desk_versions.LISTED)] = desk_versions.LISTED,
    ) -> DeskVersionList:
        async with engine.connect() as conn:
            rows = await desk_versions.stored_versions(conn, limit)
        newest = rows[0]["seq"] if rows else None
        return DeskVersionList(
            current=desks.current.version,
            file_version=desks.from_file.version,
            versions=[DeskVersionRead(**row, current=row["seq"] == newest) for row in rows],
        )

    return router
