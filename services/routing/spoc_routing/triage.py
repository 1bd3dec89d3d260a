"""Triage: from what a new ticket says to its category, priority, group and tags, by the desk's
category tree, impact × urgency matrix and ordered rules (D23, D24). Pure: the decision and the
words that explain it, for the ticket's timeline, depend on the ticket and the desk only."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from spoc_routing.desk import Classified, Group, Level, RoutingDesk, Rule


@dataclass(frozen=True)
class TicketFacts:
    """What routing reads of a new ticket. Never a priority: the requester does not set it."""

    subject: str
    description: str
    type: str
    channel: str
    requester_email: str
    category: str | None = None
    subcategory: str | None = None
    item: str | None = None
    impact: Level | None = None
    urgency: Level | None = None
    # The desk vouches for the address (TicketCreated.requester_known): only then do rules on
    # the requester's domain or VIP standing hold; anyone can type a board member's address.
    requester_vouched: bool = False
    # For a re-triage, which routing does without the text: the desk's keywords the subject
    # and description held when the ticket was created (keywords_found).
    words: frozenset[str] | None = None

    def says(self, word: str) -> bool:
        if self.words is not None:
            return word in self.words
        return _word_pattern(word).search(self._text) is not None

    @functools.cached_property
    def _text(self) -> str:
        return f"{self.subject}\n{self.description}".lower()


@dataclass(frozen=True)
class Decision:
    category: str | None
    subcategory: str | None
    item: str | None
    # The rules' keywords chose the category: the ticket came without one.
    auto_classified: bool
    impact: Level
    urgency: Level
    priority: str
    group: Group
    tags: tuple[str, ...]
    # The names of the rules that matched, in the desk's order.
    rules: tuple[str, ...]
    # Why, in words, for staff: each step and what decided it, the group last.
    steps: tuple[str, ...]
    # What working it takes: the skills of its place in the tree and of the matching rules
    # (the group's skill_match strategy looks for them).
    skills: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return "; ".join(self.steps)

    def outcome(self) -> dict[str, Any]:
        """The decision as routing records it and ticket.routed carries it (same names)."""
        return {
            "impact": self.impact,
            "urgency": self.urgency,
            "priority": self.priority,
            "category": self.category,
            "subcategory": self.subcategory,
            "item": self.item,
            "auto_classified": self.auto_classified,
            "tags": list(self.tags),
            "rules": list(self.rules),
        }


# What a re-categorisation may change: the fields of ticket.updated that triage reads.
RETRIAGED_BY = frozenset({"type", "category", "subcategory", "item", "impact", "urgency"})


def remembered(facts: TicketFacts, desk: RoutingDesk) -> dict[str, Any]:
    """What routing keeps of a ticket to triage it again without its text."""
    kept = {field: getattr(facts, field) for field in (*RETRIAGED_BY, "channel")}
    return {
        **kept,
        "requester_email": facts.requester_email,
        "requester_vouched": facts.requester_vouched,
        "words": keywords_found(facts, desk),
    }


def recalled(record: dict[str, Any], changes: dict[str, Any]) -> TicketFacts:
    """The ticket as `remembered` kept it, with an agent's changes applied."""
    values = {**record, **{f: v for f, v in changes.items() if f in RETRIAGED_BY}}
    return TicketFacts(
        subject="",
        description="",
        type=values["type"],
        channel=values["channel"],
        requester_email=values["requester_email"],
        requester_vouched=values.get("requester_vouched", False),
        category=values.get("category"),
        subcategory=values.get("subcategory"),
        item=values.get("item"),
        impact=values.get("impact"),
        urgency=values.get("urgency"),
        words=frozenset(values.get("words") or ()),
    )


def keywords_found(facts: TicketFacts, desk: RoutingDesk) -> list[str]:
    """Every keyword of the desk's tree and rules that the ticket's words hold."""
    keywords = {word for _, node in desk.category_nodes() for word in node.keywords}
    keywords |= {word for rule in desk.rules for word in rule.when.keywords}
    return sorted(word for word in keywords if facts.says(word))


def triage(facts: TicketFacts, desk: RoutingDesk) -> Decision:
    why: list[str] = []
    chain, auto_classified = _classify(facts, desk, why)
    path = [node.id for node in chain] + [None] * (3 - len(chain))
    category = path[0] if chain else facts.category
    impact = facts.impact or _deepest(chain, "impact") or desk.default_impact
    urgency = facts.urgency or _deepest(chain, "urgency") or desk.default_urgency
    priority = desk.priority(impact, urgency)
    why.insert(0, f"impact {impact} × urgency {urgency} → {priority}")

    matched = [
        (rule, said)
        for rule in desk.rules
        if (said := _matches(rule, facts, category, desk)) is not None
    ]
    group_id: str | None = None
    group_by = ""
    tags: list[str] = []
    for rule, said in matched:
        floor = rule.then.priority_floor
        raised = floor is not None and desk.ranks[floor] < desk.ranks[priority]
        if raised and floor is not None:
            priority = floor
        effect = f"; raised to {priority}" if raised else ""
        why.append(f"rule {rule.name} ({said}){effect}")
        if group_id is None and rule.then.group is not None:
            group_id, group_by = rule.then.group, f"rule {rule.name}"
        tags += [tag for tag in rule.then.tags if tag not in tags]
    skills = dict.fromkeys(
        [
            *(skill for node in chain for skill in node.skills),
            *(skill for rule, _ in matched for skill in rule.then.skills),
        ]
    )
    if group_id is None:
        owner_node = next((n for n in reversed(chain) if n.group is not None), None)
        group_id = owner_node.group if owner_node is not None else None
        group_by = f"category {' › '.join(n.id for n in chain)}"
    if group_id is None:
        group_id, group_by = desk.default_group, "the default group"
    group = desk.group(group_id)
    why.append(f"{group.name} by {group_by}")
    return Decision(
        category=category,
        subcategory=path[1] if chain else facts.subcategory,
        item=path[2] if chain else facts.item,
        auto_classified=auto_classified,
        impact=impact,
        urgency=urgency,
        priority=priority,
        group=group,
        tags=tuple(tags),
        rules=tuple(rule.name for rule, _ in matched),
        steps=tuple(why),
        skills=tuple(skills),
    )


def _classify(
    facts: TicketFacts, desk: RoutingDesk, why: list[str]
) -> tuple[list[Classified], bool]:
    """The ticket's place in the tree, category first: as it says, or found by keywords when
    it names no category (then auto-classified). Empty: a category the tree does not know."""
    if facts.category is not None:
        return _chain(desk, facts.category, facts.subcategory, facts.item), False
    best: tuple[int, int, int] = (0, 0, 0)  # words found, depth, earlier in the file
    found: list[Classified] = []
    words: list[str] = []
    for position, (path, node) in enumerate(desk.category_nodes()):
        # A keyword listed twice (or in two cases) counts once.
        hits = [word for word in dict.fromkeys(node.keywords) if facts.says(word)]
        if hits and (len(hits), len(path), -position) > best:
            best = (len(hits), len(path), -position)
            found, words = _chain(desk, *path), hits
    if not found:
        return [], False
    quoted = ", ".join(f"'{word}'" for word in words)
    why.append(f"classified {' › '.join(n.id for n in found)} by {quoted}")
    return found, True


def _chain(
    desk: RoutingDesk, category: str, subcategory: str | None = None, item: str | None = None
) -> list[Classified]:
    """The tree's nodes on the path, as far as the tree knows them."""
    # Ids are lower case; a desk whose intake declares no categories takes them as typed.
    subcategory = subcategory.lower() if subcategory is not None else None
    item = item.lower() if item is not None else None
    chain: list[Classified] = []
    node = next((c for c in desk.categories if c.id == category.lower()), None)
    if node is None:
        return chain
    chain.append(node)
    sub = next((s for s in node.subcategories if s.id == subcategory), None)
    if sub is None:
        return chain
    chain.append(sub)
    leaf = next((i for i in sub.items if i.id == item), None)
    return [*chain, leaf] if leaf is not None else chain


def _deepest(chain: list[Classified], attribute: str) -> Level | None:
    """The most specific node's default: an item's before its subcategory's and category's."""
    values: list[Level | None] = [getattr(node, attribute) for node in reversed(chain)]
    return next((value for value in values if value is not None), None)


def _matches(rule: Rule, facts: TicketFacts, category: str | None, desk: RoutingDesk) -> str | None:
    """What made the rule match, in words, or None if one of its conditions does not hold."""
    when = rule.when
    said: list[str] = []
    if when.category:
        if category not in when.category:
            return None
        said.append(f"category {category}")
    if when.type:
        if facts.type not in when.type:
            return None
        said.append(f"type {facts.type}")
    if when.channel:
        if facts.channel not in when.channel:
            return None
        said.append(f"channel {facts.channel}")
    domain = facts.requester_email.rpartition("@")[2].lower()
    if when.requester_domain:
        if not facts.requester_vouched or not any(
            domain == d or domain.endswith(f".{d}") for d in when.requester_domain
        ):
            return None
        said.append(f"requester at {domain}")
    if when.vip is not None:
        vip = facts.requester_vouched and is_vip(desk, facts.requester_email)
        if vip != when.vip:
            return None
        said.append("VIP requester" if vip else "not a VIP requester")
    if when.keywords:
        hits = [word for word in when.keywords if facts.says(word)]
        if not hits:
            return None
        said.append(", ".join(f"'{word}'" for word in hits))
    return ", ".join(said) or "always"


def is_vip(desk: RoutingDesk, email: str) -> bool:
    address = email.lower()
    domain = "@" + address.rpartition("@")[2]
    return any(entry.lower() in (address, domain) for entry in desk.vip_requesters)


@functools.cache
def _word_pattern(word: str) -> re.Pattern[str]:
    # Whole words: "vpn" in "the VPN drops", not in "vpnkit"; a phrase's spaces match any space.
    # The start is checked after the first character, not before it: a pattern that begins
    # with a look-behind loses the regex engine's fast literal scan (about 8× slower on a long
    # description, for every keyword of the desk).
    parts = word.split()
    first = re.escape(parts[0][0])
    rest = re.escape(parts[0][1:]) + "".join(rf"\s+{re.escape(part)}" for part in parts[1:])
    return re.compile(rf"{first}(?<!\w{first}){rest}(?!\w)")
