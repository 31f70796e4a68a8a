"""The seed presets' comments state row and step counts; check them against the real datasets' split counts.

The per-split row counts are the published ones (../shared/field/README.md): Deep 4505 / 15 / 480 rows of
1,000 problems x 5 solutions; Diverse 4530 / 19 / 451. Rows are synthetic; only the counts matter here.
"""

from __future__ import annotations

from importlib import resources

from codelora.config import load_config
from codelora.data.split import split_rows
from codelora.training.sft import schedule_steps


def optimizer_steps(rows: int, cfg) -> tuple[int, int]:
    """(per epoch, total) as codelora.training.sft counts them on one device."""
    per_epoch, total, _warmup = schedule_steps(cfg, rows)
    return per_epoch, total


def shaped(layout: list[tuple[int, list[str]]]) -> list[dict]:
    """layout: (number of problems, split value of each of their 5 rows)."""
    rows, p = [], 0
    for count, values in layout:
        for _ in range(count):
            rows += [{"input": f"problem {p}", "solution": f"s{i}", "split": v} for i, v in enumerate(values)]
            p += 1
    return rows


def preset_text(name: str) -> str:
    """The preset's comments as one line of words."""
    text = resources.files("codelora.presets").joinpath(f"{name}.yaml").read_text()
    return " ".join(w for line in text.splitlines() for w in line.split() if w != "#")


def split_with(cfg, rows):
    d = cfg.data
    return split_rows(
        rows, seed=d.split_seed, valid_fraction=d.valid_fraction, mode=d.split, conflicts=d.split_conflicts
    )


def test_seed_deep_comment_counts():
    cfg = load_config("seed-deep")
    rows = shaped([(901, ["train"] * 5), (3, ["valid"] * 5), (96, ["test"] * 5)])
    assert [sum(r["split"] == n for r in rows) for n in ("train", "valid", "test")] == [4505, 15, 480]
    split = split_with(cfg, rows)
    moved, train_rows = len(split.moved_to_valid), len(split.rows["train"])
    per_epoch, total = optimizer_steps(train_rows, cfg)
    text = preset_text("seed-deep")
    assert (moved, train_rows, per_epoch, total) == (47, 4270, 267, 801)
    assert f"moves {moved} train problems ({moved * 5} rows" in text
    assert f"{train_rows} training rows at batch 1 x 16 = {per_epoch} optimizer steps per epoch, {total} for 3" in text
    cfg.data.valid_fraction = 0
    column_only = split_with(cfg, rows)
    assert len(column_only.rows["train"]) == 4505 and optimizer_steps(4505, cfg) == (282, 846)
    assert "4505 rows, 282 steps per epoch, 846 steps" in text
    # the original run: 4,500 rows -> 846 steps
    assert optimizer_steps(4500, cfg)[1] == 846


def test_seed_diverse_comment_counts_for_one_layout_the_published_counts_allow():
    cfg = load_config("seed-diverse")
    # 19 valid rows: 3 whole problems + 4 rows of a problem whose 5th row is train; 451 test: 90 + 1 row of another
    rows = shaped(
        [
            (905, ["train"] * 5),
            (3, ["valid"] * 5),
            (1, ["valid"] * 4 + ["train"]),
            (90, ["test"] * 5),
            (1, ["train"] * 4 + ["test"]),
        ]
    )
    assert [sum(r["split"] == n for r in rows) for n in ("train", "valid", "test")] == [4530, 19, 451]
    split = split_with(cfg, rows)
    assert sorted(c["to"] for c in split.conflicts) == ["test", "valid"]
    moved, train_rows = len(split.moved_to_valid), len(split.rows["train"])
    per_epoch, total = optimizer_steps(train_rows, cfg)
    assert (moved, train_rows, per_epoch, total) == (46, 4295, 269, 807)
    text = preset_text("seed-diverse")
    assert f"about {round(train_rows, -2):,} training rows" in text and f"about {per_epoch} optimizer steps" in text
    assert f"{total} for 3 epochs" in text
    assert optimizer_steps(4530, cfg)[1] == 852 and "852 steps" in text
