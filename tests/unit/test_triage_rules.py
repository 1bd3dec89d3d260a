"""Triage by the desk's category tree and ordered rules (D23, D24): defaults from the tree,
classification by keywords, rules that raise the priority, pick the group and tag, and the
words that say why."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from spoc_routing.desk import RoutingDesk
from spoc_routing.triage import TicketFacts, is_vip, triage

pytestmark = pytest.mark.unit

DESK_YAML = """
vip_requesters: [ceo@example.org, "@board.example.org"]
categories:
  - id: hardware
    group: desktop-support
    urgency: low
    keywords: [laptop, screen]
    subcategories:
      - id: printer
        impact: low
        keywords: [printer, toner, paper jam]
        items:
          - {id: hp-4200, group: service-desk, keywords: [hp 4200]}
  - id: network
    impact: high
    keywords: [vpn, wifi]
rules:
  - name: vip
    when: {vip: true}
    then: {priority_floor: P2, tags: [vip]}
  - name: outage
    when: {type: [incident], keywords: [outage, down]}
    then: {group: network, priority_floor: P1, tags: [outage, vip]}
  - name: phone-to-desk
    when: {channel: [phone]}
    then: {group: service-desk}
  - name: partners
    when: {requester_domain: [partner.example.com], category: [network]}
    then: {tags: [partner]}
"""


@pytest.fixture(scope="module")
def desk() -> RoutingDesk:
    return RoutingDesk.model_validate(yaml.safe_load(DESK_YAML))


def facts(**values: Any) -> TicketFacts:
    ticket = TicketFacts(
        subject="Something is wrong",
        description="Please help.",
        type="request",
        channel="portal",
        requester_email="ala@example.org",
        requester_vouched=True,
    )
    return replace(ticket, **values)


def test_the_tree_gives_defaults_from_the_most_specific_node(desk: RoutingDesk) -> None:
    decided = triage(facts(category="hardware", subcategory="printer"), desk)
    # impact from the subcategory, urgency from the category, group from the category.
    assert (decided.impact, decided.urgency, decided.priority) == ("low", "low", "P5")
    assert decided.group.id == "desktop-support" and not decided.auto_classified
    assert decided.reason == (
        "impact low × urgency low → P5; Desktop Support by category hardware › printer"
    )

    item = triage(facts(category="hardware", subcategory="printer", item="hp-4200"), desk)
    assert (item.item, item.group.id) == ("hp-4200", "service-desk")


def test_the_tickets_own_impact_and_urgency_come_before_the_trees(desk: RoutingDesk) -> None:
    decided = triage(
        facts(category="hardware", subcategory="printer", impact="high", urgency="high"), desk
    )
    assert decided.priority == "P1"


def test_a_category_the_tree_does_not_know_keeps_its_name_and_takes_the_desk_defaults(
    desk: RoutingDesk,
) -> None:
    decided = triage(facts(category="facilities", subcategory="doors"), desk)
    assert (decided.category, decided.subcategory, decided.priority) == (
        "facilities",
        "doors",
        "P3",
    )
    assert decided.group.id == "service-desk" and not decided.auto_classified


def test_a_ticket_without_a_category_is_classified_by_the_most_specific_words(
    desk: RoutingDesk,
) -> None:
    decided = triage(facts(subject="The printer on floor 3 is out of TONER"), desk)
    assert (decided.category, decided.subcategory, decided.item) == ("hardware", "printer", None)
    assert decided.auto_classified and decided.group.id == "desktop-support"
    assert "classified hardware › printer by 'printer', 'toner'" in decided.reason

    leaf = triage(facts(description="Our HP   4200 prints blank pages"), desk)
    assert (leaf.subcategory, leaf.item, leaf.group.id) == ("printer", "hp-4200", "service-desk")

    unknown = triage(facts(subject="Coffee machine", description="It leaks."), desk)
    assert (unknown.category, unknown.auto_classified) == (None, False)
    assert unknown.group.id == "service-desk"


def test_keywords_are_whole_words_in_any_case(desk: RoutingDesk) -> None:
    assert triage(facts(subject="My VPN drops"), desk).category == "network"
    assert triage(facts(subject="vpnkit fails to build"), desk).category is None
    assert triage(facts(subject="printers everywhere"), desk).category is None


def test_matching_rules_raise_the_priority_pick_the_first_group_and_add_up_tags(
    desk: RoutingDesk,
) -> None:
    decided = triage(
        facts(
            type="incident",
            subject="Outage: the printer is down",
            requester_email="Mina@Board.Example.org",
        ),
        desk,
    )
    assert decided.rules == ("vip", "outage")
    assert decided.priority == "P1" and decided.group.id == "network"
    assert decided.tags == ("vip", "outage")
    assert decided.reason == (
        "impact low × urgency low → P5; classified hardware › printer by 'printer'; "
        "rule vip (VIP requester); raised to P2; "
        "rule outage (type incident, 'outage', 'down'); raised to P1; "
        "Network Operations by rule outage"
    )


def test_a_floor_never_makes_a_ticket_less_urgent(desk: RoutingDesk) -> None:
    decided = triage(facts(impact="high", urgency="high", requester_email="ceo@example.org"), desk)
    assert decided.priority == "P1" and decided.rules == ("vip",)
    assert "rule vip (VIP requester); Service Desk" in decided.reason


def test_conditions_all_hold_or_the_rule_does_not_match(desk: RoutingDesk) -> None:
    partner = facts(category="network", requester_email="jo@it.partner.example.com")
    assert triage(partner, desk).tags == ("partner",)
    # The domain, not a look-alike; the category too.
    assert triage(replace(partner, requester_email="jo@notpartner.example.com"), desk).tags == ()
    assert triage(replace(partner, category="hardware"), desk).tags == ()
    assert triage(facts(type="request", subject="outage"), desk).rules == ()
    phoned = triage(facts(channel="phone", category="hardware"), desk)
    assert phoned.group.id == "service-desk" and phoned.rules == ("phone-to-desk",)


def test_vip_requesters_are_addresses_or_whole_domains(desk: RoutingDesk) -> None:
    assert is_vip(desk, "CEO@example.org") and is_vip(desk, "x@board.example.org")
    assert not is_vip(desk, "cfo@example.org") and not is_vip(desk, "x@sub.board.example.org")


@given(
    impact=st.sampled_from(["high", "medium", "low"]),
    urgency=st.sampled_from(["high", "medium", "low"]),
    floors=st.lists(st.sampled_from(["P1", "P2", "P3", "P4", "P5"]), max_size=4),
)
def test_the_priority_is_the_most_urgent_of_the_matrix_and_the_floors(
    impact: str, urgency: str, floors: list[str]
) -> None:
    desk = RoutingDesk.model_validate(
        {
            "rules": [
                {"name": f"r{i}", "then": {"priority_floor": floor}}
                for i, floor in enumerate(floors)
            ]
        }
    )
    decided = triage(facts(impact=impact, urgency=urgency), desk)
    assert decided.priority == min([desk.priority(impact, urgency), *floors])  # type: ignore[arg-type]
    assert decided.rules == tuple(f"r{i}" for i in range(len(floors)))


@pytest.mark.parametrize(
    ("section", "words"),
    [
        (
            {"categories": [{"id": "hardware", "group": "nowhere"}]},
            "categories.hardware: group 'nowhere' is not among the groups",
        ),
        (
            {"rules": [{"name": "r", "then": {"priority_floor": "P0"}}]},
            "rules[0] (r): priority_floor 'P0' is not one of ['P1', 'P2', 'P3', 'P4', 'P5']",
        ),
        (
            {"rules": [{"name": "r", "then": {"group": "nowhere"}}]},
            "rules[0] (r): group 'nowhere' is not among the groups",
        ),
        (
            {
                "categories": [{"id": "hardware"}],
                "rules": [{"name": "r", "when": {"category": ["software"]}, "then": {}}],
            },
            "rules[0] (r): category 'software' is not declared",
        ),
        (
            {"categories": [{"id": "a", "subcategories": [{"id": "b"}, {"id": "b"}]}]},
            "categories.a: 'b' is declared twice",
        ),
        (
            {"rules": [{"name": "r", "then": {}}, {"name": "r", "then": {}}]},
            "rules: 'r' is declared twice",
        ),
        ({"priority_order": ["P1", "P2"]}, "priority_order must list the matrix's priorities"),
        ({"rules": [{"name": "r", "when": {"colour": ["red"]}, "then": {}}]}, "colour"),
    ],
)
def test_a_bad_desk_is_refused_with_the_path_of_the_mistake(
    section: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        RoutingDesk.model_validate(section)
    assert words in str(refused.value)


def test_the_desk_version_follows_the_configuration(desk: RoutingDesk) -> None:
    same = RoutingDesk.model_validate(yaml.safe_load(DESK_YAML))
    other = RoutingDesk.model_validate({**yaml.safe_load(DESK_YAML), "vip_requesters": []})
    assert desk.version == same.version != other.version
    assert len(desk.version) == 12


def test_priority_order_is_a_true_order() -> None:
    named = {
        "high": {"high": "critical", "medium": "high", "low": "medium"},
        "medium": {"high": "high", "medium": "medium", "low": "low"},
        "low": {"high": "medium", "medium": "low", "low": "planning"},
    }
    floor = [{"name": "r", "then": {"priority_floor": "medium"}}]
    # By name "low" would rank above "medium": a floor needs the order said.
    with pytest.raises(ValidationError, match="priority_order is needed"):
        RoutingDesk.model_validate({"matrix": named, "rules": floor})
    with pytest.raises(ValidationError, match="once each"):
        RoutingDesk.model_validate({"priority_order": ["P1", "P2", "P3", "P4", "P5", "P1"]})
    ten = {
        i: {u: "P10" if p == "P5" else p for u, p in row.items()}
        for i, row in RoutingDesk().matrix.items()
    }
    assert list(RoutingDesk.model_validate({"matrix": ten}).ranks) == [
        "P1",
        "P2",
        "P3",
        "P4",
        "P10",
    ]


def test_a_keyword_listed_twice_counts_once() -> None:
    desk = RoutingDesk.model_validate(
        {
            "categories": [
                {"id": "a", "keywords": ["vpn", "VPN"]},
                {"id": "b", "keywords": ["vpn", "wifi"]},
            ]
        }
    )
    decision = triage(facts(description="the vpn drops on wifi"), desk)
    assert decision.category == "b"


def test_rules_on_who_the_requester_is_hold_only_for_an_address_the_desk_vouches_for(
    desk: RoutingDesk,
) -> None:
    claimed = facts(requester_email="x@board.example.org", requester_vouched=False)
    assert triage(claimed, desk).rules == () and triage(claimed, desk).priority == "P3"
    partner = facts(category="network", requester_email="jo@partner.example.com")
    assert triage(partner, desk).tags == ("partner",)
    assert triage(replace(partner, requester_vouched=False), desk).tags == ()


def test_a_category_typed_in_another_case_is_found_in_the_tree(desk: RoutingDesk) -> None:
    decided = triage(facts(category="Hardware", subcategory="PRINTER"), desk)
    assert (decided.category, decided.subcategory, decided.group.id) == (
        "hardware",
        "printer",
        "desktop-support",
    )
