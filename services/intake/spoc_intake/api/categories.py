"""/api/v1/categories: the desk's categories and the fields a new ticket in each must have, for
the portal and API clients to build their forms from (D17)."""

from __future__ import annotations

from fastapi import APIRouter

from spoc_intake.api.deps import Container
from spoc_intake.categories import CategoryList
from spoc_platform.web import SharedPathRoute

router = APIRouter(prefix="/api/v1/categories", tags=["categories"], route_class=SharedPathRoute)


@router.get(
    "",
    response_model=CategoryList,
    summary="The desk's categories, subcategories and the fields each asks for (public); "
    "empty when the desk declares none",
)
async def list_categories(container: Container) -> CategoryList:
    return CategoryList(items=container.tickets.categories)
