"""The task table: VTAB-1k facts, aliases, the mini-suite, and task cards."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from peftlab.data.tasks import (
    MINI_TASKS,
    VTAB_TASKS,
    canonical_name,
    find_task_dir,
    group_of,
    resolve_task,
    validate_task_name,
)
from peftlab.errors import PeftlabError


def test_vtab_table_has_19_tasks_in_the_published_groups():
    assert len(VTAB_TASKS) == 19
    assert Counter(spec.group for spec in VTAB_TASKS.values()) == {"Natural": 7, "Specialized": 4, "Structured": 8}


def test_vtab_split_sizes_follow_the_protocol():
    for spec in VTAB_TASKS.values():
        assert spec.sizes["train800"] == 800 and spec.sizes["val200"] == 200 and spec.sizes["train800val200"] == 1000
    assert VTAB_TASKS["cifar"].sizes["test"] == 10000
    assert VTAB_TASKS["kitti_distance"].sizes["test"] == 711
    assert VTAB_TASKS["dsprites_location"].sizes["test"] == 73728
    assert VTAB_TASKS["clevr_count"].num_classes == 8 and VTAB_TASKS["smallnorb_elevation"].num_classes == 9


@pytest.mark.parametrize("alias, canonical", [("kitti", "kitti_distance"), ("dsprites_loc", "dsprites_location"),
                                              ("dsprites_ori", "dsprites_orientation"), ("clevr_dist", "clevr_distance"),
                                              ("smallnorb_azi", "smallnorb_azimuth"), ("cifar100", "cifar")])
def test_common_folder_names_are_aliases(alias, canonical):
    assert canonical_name(alias) == canonical
    assert group_of(alias) == VTAB_TASKS[canonical].group


def test_mini_suite_has_two_tasks_per_group_and_four_structured():
    assert Counter(spec.group for spec in MINI_TASKS.values()) == {"Natural": 2, "Specialized": 2, "Structured": 4}
    assert all(spec.num_classes >= 2 for spec in MINI_TASKS.values())


def test_find_task_dir_tries_the_aliases(tmp_path):
    (tmp_path / "dsprites_loc").mkdir()
    assert find_task_dir(tmp_path, "dsprites_location") == tmp_path / "dsprites_loc"
    with pytest.raises(PeftlabError, match="no task folder.*kitti_distance"):
        find_task_dir(tmp_path, "kitti")


def test_unknown_task_is_other_with_open_class_count(tmp_path):
    spec = resolve_task("my_task", tmp_path)
    assert spec.group == "Other" and spec.num_classes is None and spec.sizes["train800"] == 800


def test_card_selects_the_mini_entry_and_fills_the_test_size(tmp_path):
    (tmp_path / "task.json").write_text(json.dumps({"suite": "mini", "sizes": {"test": 123}}))
    spec = resolve_task("clevr_count", tmp_path)
    assert spec.num_classes == MINI_TASKS["clevr_count"].num_classes != VTAB_TASKS["clevr_count"].num_classes
    assert spec.sizes["test"] == 123


def test_card_cannot_contradict_the_table(tmp_path):
    (tmp_path / "task.json").write_text(json.dumps({"num_classes": 3}))
    with pytest.raises(PeftlabError, match=r"task\.json: key 'num_classes': 3 contradicts the task table \(100\)"):
        resolve_task("cifar", tmp_path)


def test_card_declares_a_users_own_task(tmp_path):
    (tmp_path / "task.json").write_text(json.dumps({"group": "Natural", "num_classes": 5, "sizes": {"test": 50}}))
    spec = resolve_task("birds", tmp_path)
    assert (spec.group, spec.num_classes, spec.sizes["test"]) == ("Natural", 5, 50)


@pytest.mark.parametrize("name", ["", "..", "a/b", ".hidden"])
def test_task_names_must_be_plain_folder_names(name):
    with pytest.raises(PeftlabError, match="not a plain folder name"):
        validate_task_name(name)
