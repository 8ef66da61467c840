"""Shared fixtures: synthetic crash scenarios are generated here, never bundled."""

from __future__ import annotations

from pathlib import Path

import pytest

from liqbt.data.synth import generate, write


@pytest.fixture(scope="session")
def synth_flash_crash(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A seeded 7-day 5m BTC flash crash (−14 % in 1 h on day 5) as candles, mark, funding.

    The same scenario ``liqbt data synth --scenario flash-crash --seed 1 --days 7 --depth 0.14
    --duration 1h --at 0.6 --out FILE`` writes.
    """
    out = tmp_path_factory.mktemp("synth") / "btcusdt-5m.feather"
    result = generate("flash-crash", seed=1, days=7, depth=0.14, duration="1h", at=0.6)
    candles, mark, funding = write(result, out)
    return candles, mark, funding
