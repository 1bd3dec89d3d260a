"""Routing's part of the desk configuration: the priority matrix, groups and their agents."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Level = Literal["high", "medium", "low"]


class Agent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)
    name: str = Field(min_length=1, max_length=200)


class Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)
    name: str = Field(min_length=1, max_length=200)
    tier: int = Field(default=1, ge=1, le=3)
    agents: tuple[Agent, ...] = ()


def _default_matrix() -> dict[Level, dict[Level, str]]:
    # ITIL's common 3×3: priority follows business impact and urgency, not the requester's say.
    return {
        "high": {"high": "P1", "medium": "P2", "low": "P3"},
        "medium": {"high": "P2", "medium": "P3", "low": "P4"},
        "low": {"high": "P3", "medium": "P4", "low": "P5"},
    }


def _default_groups() -> tuple[Group, ...]:
    return (
        Group(
            id="service-desk",
            name="Service Desk",
            tier=1,
            agents=(Agent(id="sara", name="Sara Ahmadi"), Agent(id="piotr", name="Piotr Nowak")),
        ),
        Group(id="desktop-support", name="Desktop Support", tier=2),
        Group(id="network", name="Network Operations", tier=3),
    )


class RoutingDesk(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    default_impact: Level = "medium"
    default_urgency: Level = "medium"
    matrix: dict[Level, dict[Level, str]] = Field(default_factory=_default_matrix)
    default_group: str = "service-desk"
    groups: tuple[Group, ...] = Field(default_factory=_default_groups)

    @model_validator(mode="after")
    def _complete(self) -> RoutingDesk:
        levels: tuple[Level, ...] = ("high", "medium", "low")
        for impact in levels:
            missing = [u for u in levels if u not in self.matrix.get(impact, {})]
            if missing:
                raise ValueError(f"matrix[{impact}] lacks urgency {', '.join(missing)}")
        if self.default_group not in {g.id for g in self.groups}:
            raise ValueError(f"default_group '{self.default_group}' is not among the groups")
        return self

    def priority(self, impact: Level, urgency: Level) -> str:
        return self.matrix[impact][urgency]

    def group(self, group_id: str) -> Group:
        return next(g for g in self.groups if g.id == group_id)
