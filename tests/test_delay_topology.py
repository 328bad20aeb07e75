"""Broker-side delays, on paper: how a delay is spelled in bits and how the levels'
bindings walk it down to the task exchange (the shape in ``taskq.topology``)."""

from __future__ import annotations

import math

import pytest

from taskq.errors import ConfigurationError
from taskq.topology import (
    DELAY_LEVELS,
    DELAY_UNIT,
    MAX_DELAY,
    SHORT_STRING,
    Topology,
    check_name,
    delay_level,
    delay_pattern,
    delay_routing_key,
    delay_units,
    topic_matches,
)

MAX_UNITS = (1 << DELAY_LEVELS) - 1


@pytest.mark.parametrize(
    ("delay", "units"),
    [
        (1.5, 15),
        (1, 10),
        (0.15, 2),  # halves round up, float noise or not
        (0.149, 1),
        (0.01, 1),  # any delay > 0 is at least one unit
        (1e-9, 1),
        (0, 0),  # no delay
        (-3.0, 0),
        (3600, 36_000),
        (MAX_DELAY, MAX_UNITS),
    ],
)
def test_a_delay_is_counted_in_units_rounded_to_the_nearest(delay: float, units: int) -> None:
    assert delay_units(delay) == units


@pytest.mark.parametrize("delay", [MAX_DELAY + 1, math.inf, math.nan])
def test_a_delay_the_levels_cannot_spell_is_refused(delay: float) -> None:
    with pytest.raises(ConfigurationError, match="at most 107374182 seconds"):
        delay_units(delay)


def test_the_longest_delay_is_every_level_once_about_three_and_a_half_years() -> None:
    assert MAX_DELAY == pytest.approx(MAX_UNITS * DELAY_UNIT)
    assert 3.4 < MAX_DELAY / (365.25 * 24 * 3600) < 3.5
    assert delay_level(MAX_UNITS) == DELAY_LEVELS - 1


def test_a_delay_is_spelled_in_bits_highest_first_then_the_task_name() -> None:
    key = delay_routing_key(13, "emails.send")  # 13 = 0b1101

    words = key.split(".")
    assert words[:DELAY_LEVELS] == ["0"] * (DELAY_LEVELS - 4) + ["1", "1", "0", "1"]
    assert words[DELAY_LEVELS:] == ["emails", "send"]
    assert delay_level(13) == 3  # published to the level of its highest bit
    assert delay_level(1) == 0


def test_a_delayed_key_of_the_longest_task_name_fits_an_amqp_short_string() -> None:
    name = check_name("a" * 190, what="task name")
    assert len(delay_routing_key(MAX_UNITS, name)) <= SHORT_STRING
    with pytest.raises(ConfigurationError, match="at most 190 characters"):
        check_name("a" * 191, what="task name")


def test_a_name_of_more_words_than_levels_is_refused() -> None:
    # It could pass for a delayed routing key under a task queue's '*' binding.
    check_name(".".join(["w"] * DELAY_LEVELS), what="task name")
    with pytest.raises(ConfigurationError, match="30 words"):
        check_name(".".join(["w"] * (DELAY_LEVELS + 1)), what="task name")


def test_a_task_named_like_a_delay_level_is_refused() -> None:
    topology = Topology("shop")
    with pytest.raises(ConfigurationError, match="delay level 3"):
        topology.queue_name("delay.3")
    assert topology.queue_name("delay.notify") == "shop.delay.notify"


@pytest.mark.parametrize("units", [1, 2, 5, 10, 15, 36_000, 1 << 29, MAX_UNITS])
def test_the_levels_bindings_hold_a_message_exactly_its_delay_then_hand_it_to_its_task(
    units: int,
) -> None:
    # Walk the wire shape as RabbitMQ routes it: at each level the '1' binding sends
    # the message into the level's queue (2**level units), the '0' binding on down.
    topology = Topology("shop")
    key = delay_routing_key(units, "emails.send")
    held = 0
    for level in range(delay_level(units), -1, -1):
        into_queue = topic_matches(delay_pattern(level, "1"), key)
        passed_on = topic_matches(delay_pattern(level, "0"), key)
        assert into_queue != passed_on  # exactly one way out of each level
        if into_queue:
            held += 1 << level
            ttl = topology.delay_queue_arguments(level)["x-message-ttl"]
            assert ttl == (1 << level) * 100
    assert held == units

    # Back at the task exchange: only the task's own delay binding takes it.
    assert [k for k in Topology.binding_keys("emails.send") if topic_matches(k, key)]
    assert not [k for k in Topology.binding_keys("send") if topic_matches(k, key)]
    assert not [k for k in Topology.binding_keys("emails") if topic_matches(k, key)]


def test_each_level_is_a_quorum_queue_that_dead_letters_to_the_level_below() -> None:
    topology = Topology("shop")
    assert topology.delay_queue_arguments(0) == {
        "x-queue-type": "quorum",
        "x-message-ttl": 100,
        "x-dead-letter-exchange": "shop",  # level 0: back to the task exchange
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }
    level_7 = topology.delay_queue_arguments(7)
    assert level_7["x-message-ttl"] == 12_800
    assert level_7["x-dead-letter-exchange"] == "shop.delay.6" == topology.delay_target(7)
    assert topology.delay_queue(7) == topology.delay_exchange(7) == "shop.delay.7"


def test_a_normal_routing_key_never_matches_a_delay_binding() -> None:
    for task in ("send", "emails.send", ".".join(["w"] * DELAY_LEVELS)):
        delayed_binding = Topology.binding_keys(task)[1]
        assert not topic_matches(delayed_binding, task)
        assert all(not topic_matches(delay_pattern(0, bit), task) for bit in "01")
