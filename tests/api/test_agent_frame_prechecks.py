"""The agent frame handler runs the NUL and long-integer refusals only when a frame
holds what they refuse: the same frames are refused, with the same errors, as by the
three checks run on every frame."""

from __future__ import annotations

import random

import pytest

from lcx.api.agent_frames import _refuse_unsafe_json
from lcx.api.bodies import refuse_deep_nesting, refuse_huge_integers, refuse_nul
from lcx.errors import InvalidRequest

SAMPLES = [
    '{"type":"message","data":{"conversationId":"c1","text":"hello"}}',
    '{"type":"message","data":{"text":"nul \\u0000 escaped"}}',
    '{"type":"message","data":{"text":"not a nul \\\\u0000"}}',
    '{"type":"message","data":{"text":"raw \x00 nul"}}',
    '{"type":"event","data":{"value":12345678901234567}}',
    '{"type":"event","data":{"value":-12345678901234567}}',
    '{"type":"event","data":{"value":1234567890123456}}',
    '{"type":"event","data":{"value":0.12345678901234567}}',
    '{"type":"event","data":{"value":1e12345678901234567}}',
    '{"type":"event","data":{"text":"12345678901234567 in a string"}}',
    '{"type":"event","data":{"value":12345678901234567.5}}',
    '{"type":"event","data":' + "[" * 70 + "]" * 70 + "}",
    '{"type":"event","data":{"v":"\u0663\u0663\u0663\u0663\u0663\u0663\u0663\u0663\u0663'
    '\u0663\u0663\u0663\u0663\u0663\u0663\u0663\u0663"}}',
]


def every_check(raw: str | bytes) -> None:
    refuse_nul(raw)
    refuse_deep_nesting(raw)
    refuse_huge_integers(raw)


def outcome(check: object, raw: str | bytes) -> tuple[str, object] | None:
    try:
        check(raw)  # type: ignore[operator]
    except InvalidRequest as exc:
        return exc.message, exc.details
    return None


def random_frames(count: int) -> list[str]:
    alphabet = '0123456789-.eE+"\\u{}[]:, ax\x00'
    rng = random.Random(7)
    return ['{"data":"' + "".join(rng.choice(alphabet) for _ in range(rng.randrange(60)))
            + '"}' for _ in range(count)] + \
           ['{"v":' + "".join(rng.choice("0123456789-.eE+ ,[]") for _ in range(40)) + "}"
            for _ in range(count)] + \
           ['{"v":[' + "".join(rng.choice("0123456789" * 6 + '-.e,"') for _ in range(60))
            + "]}" for _ in range(count)]


@pytest.mark.parametrize("raw", SAMPLES + random_frames(300))
def test_the_prechecked_refusals_match_the_full_ones(raw: str) -> None:
    """Refused or not, and with which message and details, as the full checks say; for
    text and for bytes."""
    assert outcome(_refuse_unsafe_json, raw) == outcome(every_check, raw)
    assert outcome(_refuse_unsafe_json, raw.encode()) == outcome(every_check, raw.encode())


def test_the_samples_cover_both_answers() -> None:
    """The hand-written samples include refused and accepted frames of each kind."""
    refused = [raw for raw in SAMPLES if outcome(every_check, raw) is not None]
    assert 5 <= len(refused) < len(SAMPLES)
    long_runs = [raw for raw in random_frames(300)
                 if outcome(refuse_huge_integers, raw) is not None]
    assert len(long_runs) >= 20  # the random frames reach the long-integer check too
