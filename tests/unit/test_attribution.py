"""Who spoke in a user turn (services/openai_link/attribution.py): clients' voice activity,
as the mixer reports it (capture times), against the turn's times as the link saw them."""

from __future__ import annotations

from services.openai_link.attribution import MARGIN_S, Attribution

T = 1_700_000_000.0


def room(*names: str, listeners: tuple[str, ...] = ()) -> Attribution:
    attribution = Attribution()
    for name in names:
        attribution.add_client(f"id-{name}", name)
    for name in listeners:
        attribution.add_client(f"id-{name}", name, role="listener")
    return attribution


def spoke(attribution: Attribution, name: str, start: float, end: float | None) -> None:
    attribution.observe(f"id-{name}", True, T + start)
    if end is not None:
        attribution.observe(f"id-{name}", False, T + end)


def test_a_turn_is_named_after_the_client_heard_within_it():
    attribution = room("kitchen", "hall", "office")
    spoke(attribution, "hall", 1.0, 2.6)
    # The API hears it a little late (speech_started) and commits after its silence.
    assert attribution.speaker(T + 1.2, T + 3.0) == "hall"


def test_clients_speaking_together_are_joined_in_join_order():
    attribution = room("kitchen", "hall", "office")
    spoke(attribution, "office", 1.0, 3.0)
    spoke(attribution, "kitchen", 1.5, 2.5)
    assert attribution.speaker(T + 1.1, T + 3.2) == "kitchen+office"


def test_speech_just_outside_the_widened_turn_does_not_count():
    attribution = room("kitchen", "hall")
    spoke(attribution, "kitchen", 0.0, 1.0)  # the previous turn's speaker
    spoke(attribution, "hall", 1.5, 3.0)
    # kitchen's last 0.1 s falls within the margin: too little to name it.
    assert attribution.speaker(T + 1.0 + MARGIN_S - 0.1, T + 3.2) == "hall"
    assert attribution.speaker(T + 0.9, T + 3.2) == "kitchen+hall"


def test_a_client_still_speaking_counts_up_to_the_end_of_the_turn():
    attribution = room("kitchen", "hall")
    spoke(attribution, "hall", 1.0, None)  # no 'stopped' yet when the transcript arrives
    assert attribution.speaker(T + 1.2, T + 1.4) == "hall"
    assert attribution.speaker(T + 0.2, T + 0.5) == "user"  # before it began


def test_nobody_heard_falls_back_to_the_sole_speaking_client():
    attribution = room("kitchen", listeners=("tv",))
    assert attribution.speaker(T, T + 1) == "kitchen"  # a listener is never the speaker
    attribution.add_client("id-hall", "hall")
    assert attribution.speaker(T, T + 1) == "user"
    attribution.present("id-hall", False)  # hall left: kitchen is alone again
    assert attribution.speaker(T, T + 1) == "kitchen"
    assert room().speaker(T, T + 1) == "user"


def test_activity_of_unknown_clients_and_repeated_transitions_are_harmless():
    attribution = room("kitchen")
    attribution.observe("id-stranger", True, T)
    attribution.observe("id-kitchen", False, T + 0.5)  # stopped without having started
    attribution.observe("id-kitchen", True, T + 1.0)
    attribution.observe("id-kitchen", True, T + 1.5)  # still the stretch from 1.0
    attribution.observe("id-kitchen", False, T + 2.0)
    assert attribution.speaker(T + 1.0, T + 1.1) == "kitchen"
    assert attribution.speaker(T + 2.4, T + 3.0) == "kitchen"  # the fallback, not overlap
    two = room("kitchen", "hall")
    two.observe("id-kitchen", True, T + 1.0)
    two.observe("id-kitchen", True, T + 1.5)
    two.observe("id-kitchen", False, T + 2.0)
    assert two.speaker(T + 1.0, T + 1.1) == "kitchen"  # from 1.0, not from 1.5
    assert two.speaker(T + 2.4, T + 3.0) == "user"
