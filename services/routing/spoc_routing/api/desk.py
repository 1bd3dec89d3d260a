"""Read-only view of routing's desk configuration (editing arrives with the admin API)."""

from fastapi import APIRouter

from spoc_routing.desk import RoutingDesk


def desk_router(desk: RoutingDesk) -> APIRouter:
    router = APIRouter(prefix="/api/v1/routing", tags=["routing"])

    @router.get("/desk", summary="The priority matrix, groups and agents in force")
    async def get_routing_desk() -> RoutingDesk:
        return desk

    return router
