"""Direct mode's ephemeral keys in signaling: each opens its session once, until it expires."""

from __future__ import annotations

from services.signaling.direct import IssuedKey, IssuedKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_opens_its_session_once() -> None:
    keys = IssuedKeys(clock=Clock())
    keys.issue("ek_one", IssuedKey("a" * 32, "Kiosk", 1600.0))
    assert keys.redeem("ek_other") is None
    assert keys.redeem("ek_one") == IssuedKey("a" * 32, "Kiosk", 1600.0)
    assert keys.redeem("ek_one") is None


def test_an_expired_key_opens_nothing_and_is_forgotten() -> None:
    clock = Clock()
    keys = IssuedKeys(clock=clock)
    keys.issue("ek_old", IssuedKey("a" * 32, "", 1010.0))
    keys.issue("ek_late", IssuedKey("b" * 32, "", 1010.0))
    clock.now = 1010.0
    assert keys.redeem("ek_old") is None
    keys.issue("ek_new", IssuedKey("c" * 32, "", 2000.0))
    assert len(keys) == 1  # ek_late expired and was dropped when the next key came


def test_beyond_the_bound_the_oldest_keys_are_forgotten() -> None:
    keys = IssuedKeys(max_keys=3, clock=Clock())
    for n in range(5):
        keys.issue(f"ek_{n}", IssuedKey(f"{n:032x}", "", 5000.0))
    assert len(keys) == 3
    assert keys.redeem("ek_0") is None and keys.redeem("ek_1") is None
    assert keys.redeem("ek_4") is not None
