"""The released tables load under peftlab's names, every number as released, with the messy rows handled."""

from __future__ import annotations

import csv
import shutil
from collections import Counter

import pytest

from peftlab.data.tasks import VTAB_TASKS
from peftlab.errors import PeftlabError
from peftlab.reference import DATA_DIR, tables
from peftlab.reference.names import ZERO_SHOT, manyshot_size
from peftlab.reference.tables import TABLES, load_table


def raw(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_each_table_states_its_source():
    for name in TABLES:
        cite = load_table(name).source.cite()
        assert cite.startswith("OSU-MLB/PETL_Vision (commit 245d262), tune_output/"), cite
    assert "tune_output/default_vtab/processed_vtab" in load_table("vtab1k").source.cite()


def test_vtab1k_rows_carry_the_released_numbers_under_peftlabs_names():
    loaded = load_table("vtab1k")
    released = raw("petl_vision_vtab1k.csv")
    assert len(loaded.rows) == len(released) == 16 * 20
    for row, line in zip(loaded.rows, released, strict=True):
        assert row.accuracy_pct == float(line["test_acc_last_epoch"])  # the number compared
        assert row.oracle_pct == float(line["test_acc_best_epoch_on_test"])  # kept, labelled, never compared
        assert row.params == int(line["trainable_params_no_head"]) and row.released_method == line["method"]
    main = [r for r in loaded.rows if not r.variant]
    assert {r.task for r in main} == set(VTAB_TASKS) and len(main) == 16 * 19
    assert Counter(r.variant for r in loaded.rows)["aug_norm"] == 16
    assert {r.task for r in loaded.rows if r.variant == "aug_norm"} == {"cifar"}
    assert {r.method for r in main} >= {"layernorm", "adapter_houlsby", "adapter_lora_init", "lora", "fact_tk"}
    houlsby = next(r for r in main if r.task == "caltech101" and r.released_method == "rand_h_adapter")
    assert houlsby.method == "adapter_houlsby" and set(houlsby.hparams) >= {"lr", "weight_decay", "dim", "scale"}


def test_manyshot_sizes_map_to_training_images():
    loaded = load_table("manyshot")
    assert len(loaded.rows) == len(raw("petl_vision_manyshot.csv")) == 171
    sizes = {(r.task, r.variant): sorted({x.size for x in loaded.rows if (x.task, x.variant) == (r.task, r.variant)})
             for r in loaded.rows}
    assert sizes == {("cifar", "cifar100_tune_lrwd"): [500, 50_000], ("cifar", "cifar100_1k_aug_normalized"): [1000],
                     ("resisc45", "resisc_tune_lrwd"): [225, 25_200], ("clevr_distance", "clevr_tune_lr"): [70_000]}
    lora = [r for r in loaded.rows if r.task == "cifar" and r.size == 500 and r.method == "lora"]
    assert sorted(r.fixed["rank"] for r in lora) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert all(r.hparams["rank"] == r.fixed["rank"] for r in lora)
    assert manyshot_size("cifar100", "1k") == 1000 and manyshot_size("clevr", "clevr") == 70_000
    with pytest.raises(PeftlabError, match="'2.5k'"):
        manyshot_size("cifar100", "2.5k")


def test_robustness_drops_the_empty_merge_fc_rows_and_strips_the_zero_shot_prefix():
    loaded = load_table("clip_robustness")
    released = raw("petl_vision_clip_robustness.csv")
    merge_fc = [r for r in released if r["test_set"] == "merge_fc"]
    assert len(merge_fc) == 3 and all(r["test_acc"] == "" for r in merge_fc)
    assert len(loaded.rows) == len(released) - 3 and len(loaded.dropped) == 3
    assert all("merge_fc" in reason for reason in loaded.dropped)
    zero = {r.split: r.accuracy_pct for r in loaded.rows if r.method == ZERO_SHOT}
    assert zero == {"test": 67.69, "shift-imagenet_a": 48.89, "shift-imagenet_r": 76.95, "shift-imagenet_sketch": 47.75,
                    "shift-imagenet_v2": 61.09}
    lora = [r for r in loaded.rows if r.released_method == "lora_32"]
    assert len(lora) == 5 and all(r.fixed == {"rank": 32} and r.settings == {"training.drop_path": 0} for r in lora)


def test_wise_curves_span_alpha_0_to_1_and_start_at_the_zero_shot_model():
    loaded = load_table("clip_wise")
    assert len(loaded.rows) == len(raw("petl_vision_clip_wise.csv")) == 9 * 5 * 11
    grids = Counter((r.method, r.split) for r in loaded.rows)
    assert set(grids.values()) == {11}
    zero_shot = {r.split: r.accuracy_pct for r in load_table("clip_robustness").rows if r.method == ZERO_SHOT}
    for row in loaded.rows:
        if row.alpha == 0.0:  # every released curve starts from the released zero-shot model (to its rounding)
            assert row.accuracy_pct == pytest.approx(zero_shot[row.split], abs=0.01 + 1e-9)
    fine_tuned = {(r.released_method, r.split): r.accuracy_pct for r in load_table("clip_robustness").rows}
    ends = [r for r in loaded.rows if r.alpha == 1.0 and (r.released_method, r.split) in fine_tuned]
    assert ends and all(r.accuracy_pct == fine_tuned[(r.released_method, r.split)] for r in ends)


def test_a_malformed_row_is_an_error_naming_the_file_and_line(tmp_path, monkeypatch):
    for name in ("petl_vision_clip_robustness.csv", "petl_vision_vtab1k.csv"):
        shutil.copy(DATA_DIR / name, tmp_path / name)
    with (tmp_path / "petl_vision_clip_robustness.csv").open("a") as handle:
        handle.write("lora_32,merge_fc,12.5,,null\n")
    with (tmp_path / "petl_vision_vtab1k.csv").open("a") as handle:
        handle.write('imagenet_x,lora,1.0,1.0,10,"{}"\n')
    monkeypatch.setattr(tables, "DATA_DIR", tmp_path)
    load_table.cache_clear()
    try:
        with pytest.raises(PeftlabError, match=r"petl_vision_clip_robustness.csv: line 55: a 'merge_fc' row with"):
            load_table("clip_robustness")
        with pytest.raises(PeftlabError, match=r"petl_vision_vtab1k.csv: line 322: reference task 'imagenet_x'"):
            load_table("vtab1k")
    finally:
        load_table.cache_clear()
    with pytest.raises(PeftlabError, match="unknown; known: vtab1k"):
        load_table("vtab")
