"""Margin-ratio warnings skip the ratio only when it cannot have reached the threshold: on random
mark walks (cross and isolated, across tier boundaries, with fills in between) they record
exactly the warnings of a checker that evaluates every bar."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from liqbt.core.account import Account
from liqbt.core.margin_warnings import MarginWarnings
from liqbt.core.profile import load_profile


class EveryBar(MarginWarnings):
    """The reference: evaluates the ratio on every bar."""

    def _safe(self, account: Account) -> bool:
        return False


def _account(profile: str, mode: str, leverage: float) -> Account:
    account = Account(load_profile(profile), 10_000.0)
    account.set_market("BTCUSDT", leverage, mode)
    return account


@settings(deadline=None, max_examples=40)
@given(
    profile=st.sampled_from(["binance", "gate", "simple"]),
    mode=st.sampled_from(["cross", "isolated"]),
    leverage=st.sampled_from([10.0, 20.0, 50.0]),
    size=st.floats(0.5, 3.0),
    steps=st.lists(st.floats(-0.004, 0.004), min_size=5, max_size=120),
    fill_at=st.integers(0, 130),
    threshold=st.sampled_from([0.3, 0.5, 0.8]),
)
def test_skipping_changes_no_warning(profile, mode, leverage, size, steps, fill_at, threshold):
    fast, slow = _account(profile, mode, leverage), _account(profile, mode, leverage)
    for account in (fast, slow):
        account.fill("BTCUSDT", size, 60_000.0, 0.0005, "net")
    checker, reference = MarginWarnings(threshold), EveryBar(threshold)
    start = datetime(2024, 1, 1)
    price = 60_000.0
    for i, step in enumerate(steps):
        price *= 1 + step
        for account in (fast, slow):
            account.clock = start + timedelta(minutes=5 * i)
            account.set_mark("BTCUSDT", price)
            if i == fill_at:  # a fill changes the state (version) in the middle of the walk
                account.fill("BTCUSDT", size / 2, price, 0.0005, "net")
        checker.check(fast)
        reference.check(slow)
    assert fast.events == slow.events
