"""Shared fixtures: synthetic crash scenarios are generated here, never bundled."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from liqbt.data.synth import generate, write

# The suite's property tests run derandomized (a fixed example sequence per test), so a green
# CI stays green and a red one reproduces; explore new examples with
# ``pytest --hypothesis-profile=explore`` (random seeds, more examples).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=500, print_blob=True)
settings.load_profile("ci")


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
