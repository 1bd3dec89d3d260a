"""Read-only view of the SLA policy and calendars in force."""

from fastapi import APIRouter

from spoc_sla.desk import SlaDesk


def desk_router(desk: SlaDesk) -> APIRouter:
    router = APIRouter(prefix="/api/v1/sla", tags=["sla"])

    @router.get("/desk", summary="Calendars and targets per priority")
    async def get_sla_desk() -> SlaDesk:
        return desk

    return router
