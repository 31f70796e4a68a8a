"""Choosing LiveCodeBench problems for `evaluate`: preset, filters, then --limit, said in one honest line."""

from __future__ import annotations

from pathlib import Path

import pytest

from codelora.benchmarks import livecodebench as lcb
from codelora.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures"
LCB41 = Path(__file__).resolve().parents[1].parent / "shared" / "field" / "lcb41" / "lcb41_atcoder_easy_public.jsonl"


def test_limit_is_said_apart_from_what_the_filters_select():
    rows = lcb.read_raw_problems(FIXTURES / "lcb_dated.jsonl")
    selected, filters, line = lcb.select_problems(rows, "dated.jsonl", "atcoder-easy")
    assert [r["question_id"] for r in selected] == ["abc366_a", "abc392_b"]
    assert filters == lcb.PRESETS["atcoder-easy"]
    assert line == (
        "preset atcoder-easy (platform=atcoder, difficulty=easy, date_from=2408, date_to=2502) "
        "selects 2 of 7 problems from dated.jsonl"
    )
    selected, _, line = lcb.select_problems(rows, "dated.jsonl", "atcoder-easy", limit=1)
    assert [r["question_id"] for r in selected] == ["abc366_a"]
    assert line.endswith("selects 2 of 7 problems from dated.jsonl; --limit 1 keeps the first 1")
    # a limit above the count changes nothing and says nothing; an explicit filter beats the preset's value
    assert "--limit" not in lcb.select_problems(rows, "d", "atcoder-easy", limit=5)[2]
    assert lcb.select_problems(rows, "d", "atcoder-easy", date_to="2412")[1]["date_to"] == "2412"
    with pytest.raises(UserError, match="--limit must be > 0, got 0"):
        lcb.select_problems(rows, "d", limit=0)
    with pytest.raises(UserError, match="unknown --preset 'nope'"):
        lcb.select_problems(rows, "d", "nope")


@pytest.mark.skipif(not LCB41.is_file(), reason=f"field data absent: {LCB41} (the course's 41 problems)")
def test_course_set_preset_selects_41_and_limit_3_says_so():
    rows = lcb.read_raw_problems(LCB41)
    selected, _, line = lcb.select_problems(rows, "lcb41", "atcoder-easy", limit=3)
    assert len(selected) == 3
    assert "selects 41 of 41 problems from lcb41; --limit 3 keeps the first 3" in line
    assert len(lcb.select_problems(rows, "lcb41", "atcoder-easy")[0]) == 41
