"""Routing's part of the desk configuration: the priority matrix, groups and their agents, the
category tree (D23) and the ordered triage rules."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from spoc_routing.shifts import Shift

Level = Literal["high", "medium", "low"]
TicketType = Literal["incident", "request", "complaint", "suggestion"]
Channel = Literal["portal", "email", "api", "chat", "phone"]
Strategy = Literal["least_loaded", "round_robin", "skill_match"]
NodeId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]
# A word or phrase looked for in the subject and description, whole words, any case.
Keyword = Annotated[
    str, StringConstraints(min_length=2, max_length=100, strip_whitespace=True, to_lower=True)
]
Domain = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9.-]+\.[a-z]{2,}$", max_length=253, strip_whitespace=True, to_lower=True
    ),
]


class Agent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)
    name: str = Field(min_length=1, max_length=200)
    # Open tickets at once; none: no limit (or the group's agent_capacity).
    capacity: int | None = Field(default=None, ge=1, le=10_000)
    # What the person knows (the group's skill_match strategy prefers who has what a ticket
    # needs: the skills of its category, sub-category, item and matching rules).
    skills: tuple[NodeId, ...] = ()
    # Their own shift (one of the desk's shifts); none: the group's.
    shift: NodeId | None = None


class Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)
    name: str = Field(min_length=1, max_length=200)
    tier: int = Field(default=1, ge=1, le=3)
    agents: tuple[Agent, ...] = ()
    # Open tickets at once for a member who has no capacity of their own (also those intake
    # places here); none: no limit. A full group's new tickets wait in its queue, unowned,
    # until a member resolves one.
    agent_capacity: int | None = Field(default=None, ge=1, le=10_000)
    # Who among the members with room, on duty and available gets a new ticket:
    # least_loaded (open tickets against capacity), round_robin (whoever has waited longest
    # since their last ticket) or skill_match (most of the skills the ticket needs, then the
    # least loaded).
    strategy: Strategy = "least_loaded"
    # When the members are on duty (one of the desk's shifts); none: always.
    shift: NodeId | None = None
    # The staff member a hierarchical escalation goes up to (see RoutingDesk.escalation); a
    # member or not. None: the group's escalations notify nobody.
    manager: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)


EscalationAction = Literal["notify_manager", "reassign", "raise_priority"]


class EscalationSteps(BaseModel):
    """What routing does when sla warns that a target is near (`on_warning`) and when it is
    breached (`on_breach`), in this order: notify the group's manager, hand the ticket to
    another member of its group (the group's strategy picks), raise its priority one step."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on_warning: tuple[EscalationAction, ...] | None = None
    on_breach: tuple[EscalationAction, ...] | None = None


class Escalation(BaseModel):
    """Hierarchical escalation on sla.warning and sla.breached (D27): the desk's steps, and
    per priority the steps that differ (a step list given for a priority replaces the
    desk's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on_warning: tuple[EscalationAction, ...] = ("notify_manager",)
    on_breach: tuple[EscalationAction, ...] = ("notify_manager", "raise_priority")
    priorities: dict[str, EscalationSteps] = Field(default_factory=dict)

    def steps(self, priority: str, stage: Literal["warning", "breach"]) -> tuple[str, ...]:
        override = self.priorities.get(priority)
        chosen = getattr(override, f"on_{stage}") if override is not None else None
        steps: tuple[str, ...] = chosen if chosen is not None else getattr(self, f"on_{stage}")
        # Whatever the file's order, the owner is settled before the priority is raised (the
        # new priority's ticket.routed then names the new owner).
        return tuple(sorted(steps, key=_STEP_ORDER.index))

    def problems(self, priorities: set[str]) -> list[str]:
        """What the desk's validation reports, each with its path in the file."""
        lists = [
            ("escalation.on_warning", self.on_warning),
            ("escalation.on_breach", self.on_breach),
            *(
                (f"escalation.priorities.{priority}.on_{stage}", steps)
                for priority, override in self.priorities.items()
                for stage, steps in (
                    ("warning", override.on_warning),
                    ("breach", override.on_breach),
                )
                if steps is not None
            ),
        ]
        return [
            *(
                f"escalation.priorities: '{priority}' is not one of {sorted(priorities)}"
                for priority in self.priorities
                if priority not in priorities
            ),
            *(
                f"{where}: '{step}' is listed twice"
                for where, steps in lists
                for step, n in sorted(Counter(steps).items())
                if n > 1
            ),
        ]


_STEP_ORDER: tuple[str, ...] = ("notify_manager", "reassign", "raise_priority")


class Classified(BaseModel):
    """What a node of the category tree says about its tickets: the group that takes them and
    the impact and urgency they have when the requester's ticket does not say (D23, D24)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: NodeId
    name: str | None = Field(default=None, max_length=200)
    group: NodeId | None = None
    impact: Level | None = None
    urgency: Level | None = None
    # For tickets that come without a category: the words that point here (auto-classified).
    keywords: tuple[Keyword, ...] = ()
    # What working its tickets takes (added up along the path; see Agent.skills).
    skills: tuple[NodeId, ...] = ()


class Item(Classified):
    """An affected item (a service or a configuration item, D23)."""


class Subcategory(Classified):
    items: tuple[Item, ...] = ()


class Category(Classified):
    subcategories: tuple[Subcategory, ...] = ()


class RuleWhen(BaseModel):
    """Every condition given must hold; within a list, any one value will do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    category: tuple[NodeId, ...] = ()
    type: tuple[TicketType, ...] = ()
    channel: tuple[Channel, ...] = ()
    requester_domain: tuple[Domain, ...] = ()
    vip: bool | None = None
    keywords: tuple[Keyword, ...] = ()


class RuleThen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    group: NodeId | None = None
    # At least this urgent: a P2 floor turns a P3 or P4 into a P2 and leaves a P1 alone.
    priority_floor: str | None = Field(default=None, max_length=16)
    tags: tuple[NodeId, ...] = ()
    # Skills the ticket needs, added to its category's.
    skills: tuple[NodeId, ...] = ()


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: NodeId
    when: RuleWhen = Field(default_factory=RuleWhen)
    then: RuleThen


class DeskProblems(ValueError):
    """The cross-references the desk's validation found wrong, each "<path>: <what>": the
    admin API answers one error per problem (spoc_platform.web reads `problems`), the file's
    loader all of them in one message."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


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
    # Most urgent first. Default: the matrix's priorities in name order (P1 before P5).
    priority_order: tuple[str, ...] | None = None
    categories: tuple[Category, ...] = ()
    # Every rule whose conditions hold applies, in this order: the first that names a group
    # decides the group, the most urgent floor wins, and the tags add up.
    rules: tuple[Rule, ...] = ()
    # Requesters the desk treats as VIP (rules' `vip: true`): addresses, or @domain for all of one.
    vip_requesters: tuple[str, ...] = ()
    # Named working hours for groups and agents (Group.shift, Agent.shift).
    shifts: dict[NodeId, Shift] = Field(default_factory=dict)
    # What a warning or a breach of a ticket's SLA target does (sla_escalation.py).
    escalation: Escalation = Field(default_factory=Escalation)

    @model_validator(mode="after")
    def _complete(self) -> RoutingDesk:
        levels: tuple[Level, ...] = ("high", "medium", "low")
        for impact in levels:
            missing = [u for u in levels if u not in self.matrix.get(impact, {})]
            if missing:
                raise ValueError(f"matrix[{impact}] lacks urgency {', '.join(missing)}")
        groups = {g.id for g in self.groups}
        if self.default_group not in groups:
            raise ValueError(f"default_group '{self.default_group}' is not among the groups")
        priorities = {p for row in self.matrix.values() for p in row.values()}
        if self.priority_order is not None and (
            set(self.priority_order) != priorities or len(self.priority_order) != len(priorities)
        ):
            raise ValueError(
                f"priority_order must list the matrix's priorities once each: {sorted(priorities)}"
            )
        if (
            self.priority_order is None
            and any(rule.then.priority_floor is not None for rule in self.rules)
            and not all(_NUMBERED.match(p) for p in priorities)
        ):
            # "high" < "low" < "medium" by name: a floor would raise the wrong way.
            raise ValueError(
                f"priority_order is needed (most urgent first) for floors of priorities not "
                f"named P1, P2, …: {sorted(priorities)}"
            )
        problems = [
            *(
                f"categories.{'.'.join(path)}: group '{node.group}' is not among the groups"
                for path, node in self.category_nodes()
                if node.group is not None and node.group not in groups
            ),
            *(
                f"rules[{i}] ({rule.name}): group '{rule.then.group}' is not among the groups"
                for i, rule in enumerate(self.rules)
                if rule.then.group is not None and rule.then.group not in groups
            ),
            *(
                f"rules[{i}] ({rule.name}): priority_floor '{rule.then.priority_floor}' is not "
                f"one of {sorted(priorities)}"
                for i, rule in enumerate(self.rules)
                if rule.then.priority_floor is not None
                and rule.then.priority_floor not in priorities
            ),
            *(
                f"rules[{i}] ({rule.name}): category '{category}' is not declared"
                for i, rule in enumerate(self.rules)
                for category in rule.when.category
                if self.categories and category not in {c.id for c in self.categories}
            ),
        ]
        problems += [
            f"groups.{g.id}{where}: shift '{shift}' is not among the shifts"
            for g in self.groups
            for where, shift in [
                ("", g.shift),
                *((f".agents.{a.id}", a.shift) for a in g.agents),
            ]
            if shift is not None and shift not in self.shifts
        ]
        problems += self.escalation.problems(priorities)
        problems += _repeats("groups", [g.id for g in self.groups])
        problems += _repeats("agents", [a.id for g in self.groups for a in g.agents])
        problems += _repeats("categories", [c.id for c in self.categories])
        for c in self.categories:
            problems += _repeats(f"categories.{c.id}", [s.id for s in c.subcategories])
            for sub in c.subcategories:
                problems += _repeats(f"categories.{c.id}.{sub.id}", [i.id for i in sub.items])
        problems += _repeats("rules", [rule.name for rule in self.rules])
        if problems:
            raise DeskProblems(problems)
        return self

    def category_nodes(self) -> list[tuple[tuple[str, ...], Classified]]:
        """Every node of the category tree with its path of ids, in file order, parents first."""
        nodes: list[tuple[tuple[str, ...], Classified]] = []
        for c in self.categories:
            nodes.append(((c.id,), c))
            for sub in c.subcategories:
                nodes.append(((c.id, sub.id), sub))
                nodes += [((c.id, sub.id, i.id), i) for i in sub.items]
        return nodes

    @cached_property
    def ranks(self) -> dict[str, int]:
        """Each priority's urgency rank: 0 is the most urgent."""
        order = self.priority_order or tuple(
            sorted({p for row in self.matrix.values() for p in row.values()}, key=_urgency_key)
        )
        return {priority: rank for rank, priority in enumerate(order)}

    def more_urgent(self, priority: str) -> str | None:
        """The priority one step more urgent; None for the most urgent (or one not known)."""
        rank = self.ranks.get(priority)
        if not rank:
            return None
        return next(p for p, r in self.ranks.items() if r == rank - 1)

    @cached_property
    def version(self) -> str:
        """Which configuration a decision used: a digest of this section as loaded."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]

    def priority(self, impact: Level, urgency: Level) -> str:
        return self.matrix[impact][urgency]

    def group(self, group_id: str) -> Group:
        return next(g for g in self.groups if g.id == group_id)

    @cached_property
    def _agents(self) -> dict[str, Agent]:
        return {a.id: a for g in self.groups for a in g.agents}

    def skills_of(self, agent_id: str) -> frozenset[str]:
        """What the desk file says the person knows (nothing for people only intake placed)."""
        person = self._agents.get(agent_id)
        return frozenset(person.skills) if person else frozenset()

    def shift_of(self, agent_id: str, group: Group) -> Shift | None:
        """The person's working hours: their own, else their group's; None: always on duty."""
        person = self._agents.get(agent_id)
        name = (person.shift if person else None) or group.shift
        return self.shifts[name] if name is not None else None


_NUMBERED = re.compile(r"^P(\d+)$", re.IGNORECASE)


def _urgency_key(priority: str) -> tuple[int, str]:
    """P1 before P2 before P10; anything else after, by name."""
    numbered = _NUMBERED.match(priority)
    return (int(numbered.group(1)), "") if numbered else (1 << 30, priority)


def _repeats(where: str, ids: list[str]) -> list[str]:
    return [f"{where}: '{i}' is declared twice" for i, n in sorted(Counter(ids).items()) if n > 1]
