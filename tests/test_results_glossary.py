"""docs/results.md defines every field of the JSON result (RunResult and Statistics)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from liqbt.runner import RunResult
from liqbt.stats import Statistics

GLOSSARY = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def test_every_result_field_is_in_the_glossary():
    text = GLOSSARY.read_text(encoding="utf-8")
    fields = [f.name for f in dataclasses.fields(RunResult)
              if f.name not in RunResult._REPORT_ONLY]
    fields += [f.name for f in dataclasses.fields(Statistics)]
    missing = [name for name in fields if f"`{name}`" not in text]
    assert not missing, f"docs/results.md does not define {missing}"
    assert len(fields) > 50
