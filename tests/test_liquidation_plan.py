"""The liquidation procedure as a plan (margin-model §9), without backtrader: the plan is read
from a core Account at the trigger instant and executed on it with ``apply_step``. Every
expected number is derived by hand in the test's docstring (Binance tiers: up to 50,000 USDT
mmr 0.4 %, then 0.5 % with cum 50; taker fee 0.05 %)."""

from __future__ import annotations

import pytest

from liqbt.core import liquidation as liq
from liqbt.core.account import Account
from liqbt.core.profile import load_profile

FEE = 0.0005


def _account(cash: float, leverage: float, mode: str, **kwargs: str) -> Account:
    account = Account(load_profile("binance"), cash, **kwargs)
    account.set_market("BTCUSDT", leverage, mode)
    return account


def test_isolated_partial_step_then_full_close_at_bankruptcy():
    """2 BTC long at 60,000, 50x isolated: M = 2,400, LP 59,070.35 (tier 2). A gap to 59,000:
    M + upnl = 400 still pays the closing fee, so one partial step cuts the position to the
    tier-1 cap: 50,000 / 59,000 = 0.847458 BTC kept, 1.152542 closed at 59,000 (fee 34.00).
    The rest (margin 2,400 × 0.847458 / 2 = 1,016.95) is still past its LP at 59,000, so it is
    closed in full, settled at its bankruptcy price 60,000 − 1,016.95 / 0.847458 = 58,800; the
    fund gains 0.847458 × 200 = 169.49. The partial step released 2,400 × 1.152542 / 2 =
    1,383.05 of margin against a loss of 1,152.54, so the wallet ends at
    2,540 + 1,383.05 − 1,152.54 − 34.00 = 2,736.51 and nothing else is left."""
    account = _account(5000.0, 50, "isolated")
    account.fill("BTCUSDT", 2, 60_000, FEE, "net")
    pos = account.positions[("BTCUSDT", "net")]
    assert account.liquidation_price(pos)[0] == pytest.approx((120_000 - 2400 - 50) / 1.99)
    account.set_mark("BTCUSDT", 59_000)
    steps = liq.run_plan(account, liq.isolated_plan(account, pos, 59_000))
    kept = 50_000 / 59_000
    assert [type(s).__name__ for s in steps] == ["CancelOrders", "CloseStep", "CloseStep"]
    partial, full = steps[1], steps[2]
    assert partial.kind == "partial" and full.kind == "full"
    (cut,) = partial.closes
    assert cut.qty == pytest.approx(-(2 - kept), rel=1e-12)
    assert cut.execution == cut.settlement == 59_000 and cut.fee_rate == FEE
    (rest,) = full.closes
    assert rest.qty == pytest.approx(-kept, rel=1e-12)
    assert rest.execution == 59_000 and rest.settlement == pytest.approx(58_800, rel=1e-12)
    assert rest.fee_rate == 0.0
    assert pos.size == 0
    assert account.insurance_fund == pytest.approx(kept * 200, rel=1e-9)
    released = 2400 * (2 - kept) / 2
    wallet = 2540 + released - (2 - kept) * 1000 - (2 - kept) * 59_000 * FEE
    assert account.equity() == pytest.approx(wallet, rel=1e-9)
    assert wallet == pytest.approx(2736.51, abs=0.01)


def test_isolated_partial_step_that_clears_the_trigger_ends_the_plan():
    """At the LP itself (59,070.35) the tier-1 cut leaves 50,000 / LP = 0.846448 BTC whose LP
    is lower: the plan stops after the partial step (the broker's walk continues)."""
    account = _account(5000.0, 50, "isolated")
    account.fill("BTCUSDT", 2, 60_000, FEE, "net")
    pos = account.positions[("BTCUSDT", "net")]
    lp = (120_000 - 2400 - 50) / 1.99
    account.set_mark("BTCUSDT", lp)
    steps = liq.run_plan(account, liq.isolated_plan(account, pos, lp))
    assert [getattr(s, "kind", None) for s in steps] == [None, "partial"]
    assert pos.size == pytest.approx(50_000 / lp, rel=1e-12)
    assert account.liquidation_price(pos)[0] < lp


def test_hedge_netting_clears_the_cross_trigger():
    """Hedge mode, cross 50x: LONG 0.2 and SHORT 0.1 BTC at 60,000, wallet 600 − 9 = 591. The
    cross condition holds at (591 − 0.2 × 60,000 + 0.1 × 60,000) / (0.3 × 0.004 − 0.1) =
    54,746.96; the plan cancels, nets the overlapping 0.1 (both legs at that mark, taker fee)
    and stops: the remaining 0.1 long is safe there."""
    account = _account(600.0, 50, "cross", position_mode="hedge")
    account.fill("BTCUSDT", 0.2, 60_000, FEE, "long")
    account.fill("BTCUSDT", -0.1, 60_000, FEE, "short")
    lp = (591 - 0.2 * 60_000 + 0.1 * 60_000) / (0.3 * 0.004 - 0.1)
    account.set_mark("BTCUSDT", lp)
    assert liq.cross_triggered(account)
    steps = liq.run_plan(account, liq.cross_plan(account))
    assert [type(s).__name__ for s in steps] == ["CancelOrders", "CloseStep"]
    assert steps[1].kind == "net"
    assert [(c.leg, c.qty) for c in steps[1].closes] == [
        ("long", pytest.approx(-0.1)), ("short", pytest.approx(0.1))
    ]
    assert all(c.execution == c.settlement == lp for c in steps[1].closes)
    assert account.positions[("BTCUSDT", "long")].size == pytest.approx(0.1)
    assert account.positions[("BTCUSDT", "short")].size == 0
    assert account.wallet_balance == pytest.approx(
        591 - 2 * 0.1 * lp * FEE, rel=1e-12  # the two legs' PnL cancel, two taker fees
    )
    assert not liq.cross_triggered(account)


def test_cross_full_close_at_bankruptcy_then_wipeout():
    """Cross 20x long 0.5 BTC at 60,000, wallet 1,515 − 15 = 1,500: bankruptcy price
    60,000 − 1,500 / 0.5 = 57,000. At 57,100 the margin balance is 1,500 − 0.5 × 2,900 = 50
    below MM 0.004 × 28,550 = 114.2; tier 1 has no partial step, so the leg is closed at
    57,100 and settled at 57,000; the fund gains 50, the wallet ends at 0 and the account is
    wiped out (equity 0 cannot open the smallest order)."""
    account = _account(1515.0, 20, "cross")
    account.fill("BTCUSDT", 0.5, 60_000, FEE, "net")
    account.set_mark("BTCUSDT", 57_100)
    steps = liq.run_plan(account, liq.cross_plan(account))
    assert [type(s).__name__ for s in steps] == ["CancelOrders", "CloseStep", "Wipeout"]
    (close,) = steps[1].closes
    assert steps[1].kind == "full"
    assert (close.qty, close.execution) == (-0.5, 57_100)
    assert close.settlement == pytest.approx(57_000, rel=1e-12)
    assert account.insurance_fund == pytest.approx(50, rel=1e-9)
    assert account.wallet_balance == 0 and steps[2].equity == 0
    assert account.events[-1].reason.startswith("equity 0.00 USDT")


def test_a_top_up_ends_the_isolated_plan():
    """Isolated with automatic top-up (Bybit): at the LP the plan tops up first and, the
    margin moved, stops there without cancelling anything."""
    account = Account(load_profile("bybit"), 5000.0)
    account.set_market("BTCUSDT", 50, "isolated", auto_top_up=True)
    account.fill("BTCUSDT", 0.5, 60_000, FEE, "net")
    pos = account.positions[("BTCUSDT", "net")]
    lp = account.liquidation_price(pos)[0]
    account.set_mark("BTCUSDT", lp)
    margin = pos.margin
    steps = liq.run_plan(account, liq.isolated_plan(account, pos, lp))
    assert steps == [liq.TopUp("BTCUSDT", "net")]
    assert pos.margin == pytest.approx(margin + 0.5 * 60_000 / 50)  # IM = 600
    assert account.liquidation_price(pos)[0] < lp


def test_not_triggered_after_cancel_takes_no_step():
    """A cross account that is not in breach (the broker's walk asked at a stale instant):
    only the cancel step, no close."""
    account = _account(1515.0, 20, "cross")
    account.fill("BTCUSDT", 0.5, 60_000, FEE, "net")
    account.set_mark("BTCUSDT", 59_000)
    assert liq.run_plan(account, liq.cross_plan(account)) == [liq.CancelOrders(None)]
    assert account.positions[("BTCUSDT", "net")].size == 0.5


def test_partial_reduction_ignores_a_float_residue_above_the_cap():
    """A step that cut a position to the tier-1 cap 50,000 USDT at 50,805.01 leaves
    50,000 / 50,805.01 = 0.98415490913199 BTC; two ulps more (float residue of the cut) value
    at 50,000.00000000001, in tier 2, and would be "reduced" by 2e-16 BTC: a fill of nothing
    (the fast-engine parity suite found one, whose zero-size round trip divided by zero). It is
    no step; a real excess of 1e-6 BTC still is."""
    tiers = load_profile("binance").symbol("BTCUSDT").tiers
    price = 50_805.01
    residue = 0.9841549091319932
    assert tiers.tier_index(tiers.lookup_value(residue, price)) == 1
    assert liq.partial_reduction(residue, price, tiers, 1, 1e6, FEE) == 0.0
    step = liq.partial_reduction(50_000 / price + 1e-6, price, tiers, 1, 1e6, FEE)
    assert step == pytest.approx(1e-6, rel=1e-6)
