"""The cost model: the paper study's counts against a hand count, FLOPs against torch's own FLOP counter, split
sizes from each source, and SLURM resources that follow the estimate (large studies) or stay small (mini)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import yaml
from pipeline_helpers import PROJECT, TINY

from peftlab.cli import main
from peftlab.errors import PeftlabError
from peftlab.pipeline import cost
from peftlab.pipeline.steps import STEPS, Resources, Study

PAPER = "config/paper.yaml"
# config/paper.yaml's grids, counted by hand: points per method before search.lr x search.weight_decay (2 x 2).
PAPER_GRID_POINTS = {"linear": 1, "full": 1, "partial": 3 * 3, "bitfit": 1, "layernorm": 1, "difffit": 1, "ssf": 1,
                     "vpt_shallow": 5, "vpt_deep": 4, "adapter_houlsby": 4 * 4, "adapter_pfeiffer": 4 * 4,
                     "adapter_lora_init": 5 * 4, "adaptformer": 3 * 3, "convpass": 2 * 5 * 2, "lora": 4,
                     "repadapter": 3 * 5, "fact_tt": 3 * 5, "fact_tk": 3 * 5, "vqt": 3}
# Its labelled extension study (huggingface peft's methods), counted the same way.
EXTENSION_GRID_POINTS = {"hf_lora": 4, "hf_loha": 3, "hf_lokr": 3, "hf_oft": 3, "hf_boft": 4, "hf_vera": 3,
                         "hf_fourierft": 2, "hf_hra": 4, "hf_adalora": 3}
# VTAB-1k test sets (Zhai et al. 2019, Table 6 of the VTAB paper), by task.
VTAB_TEST = {"cifar": 10000, "caltech101": 6084, "dtd": 1880, "oxford_flowers102": 6149, "oxford_iiit_pet": 3669,
             "svhn": 26032, "sun397": 21750, "patch_camelyon": 32768, "eurosat": 5400, "resisc45": 6300,
             "diabetic_retinopathy": 42670, "clevr_count": 15000, "clevr_distance": 15000, "dmlab": 22735,
             "kitti_distance": 711, "dsprites_location": 73728, "dsprites_orientation": 73728,
             "smallnorb_azimuth": 12150, "smallnorb_elevation": 12150}


def study_of(path: str, tmp_path, **changes) -> Study:
    """The config at ``path`` (sections updated by ``changes``; None drops one) as a study rooted in an empty
    folder."""
    config = yaml.safe_load((PROJECT / path).read_text())
    for section, values in changes.items():
        config[section] = None if values is None else dict(config.get(section) or {}, **values)
    return Study(copy.deepcopy(config), PROJECT / path, tmp_path)


@pytest.fixture(scope="module")
def paper(tmp_path_factory) -> cost.StudyCost:
    return cost.estimate(study_of(PAPER, tmp_path_factory.mktemp("paper")))


def test_the_paper_study_counts_equal_a_hand_count(paper):
    steps = paper.by_step()
    assert set(steps) == {"search", "train", "manyshot"}
    assert 4 * sum(PAPER_GRID_POINTS.values()) == 628  # the paper's own methods: 628 trials per task
    methods = len(PAPER_GRID_POINTS) + len(EXTENSION_GRID_POINTS)
    trials = 4 * (sum(PAPER_GRID_POINTS.values()) + sum(EXTENSION_GRID_POINTS.values())) * 19
    search = steps["search"]
    assert (search.jobs, search.runs, search.epochs) == (19 * methods, trials, trials * 100)
    assert (search.train_images, search.eval_images) == (trials * 100 * 800, trials * 200)
    train = steps["train"]
    runs = 19 * methods * 2
    assert (train.jobs, train.runs, train.epochs, train.train_images) == (19 * methods, runs, runs * 100,
                                                                          runs * 100 * 1000)
    assert train.eval_images == methods * 2 * sum(VTAB_TEST.values())  # every method, both seeds, each test set
    manyshot = steps["manyshot"]  # cifar, resisc45, clevr_distance x 1000/5000/10000 x 9 methods x 2 seeds
    assert (manyshot.jobs, manyshot.runs, manyshot.epochs) == (81, 162, 162 * 40)
    assert manyshot.train_images == (1000 + 5000 + 10000) * 40 * 9 * 2 * 3
    assert manyshot.eval_images == (10000 + 6300 + 15000) * 3 * 9 * 2
    assert paper.total().runs == trials + runs + 162


def test_forward_flops_equal_torch_flop_counter():
    """The architecture formula against torch's FLOP counter on timm's ViT-B/16 (meta device) and the mini ViT."""
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    import peftlab.backbones  # noqa: F401  (registers the mini ViT with timm)

    for name, size in (("vit_base_patch16_224.orig_in21k", 224), ("vit_mini_patch8_32", 32)):
        with torch.device("meta"):
            model = timm.create_model(name.split(".")[0], num_classes=0)
            images = torch.empty(1, 3, size, size)
        with FlopCounterMode(display=False) as counter:
            model(images)
        assert cost.architecture(name).forward_flops(size) == counter.get_total_flops()


@pytest.mark.parametrize(("method", "hparams"), [("full", {}), ("lora", {"rank": 8}), ("vpt_deep", {"num_tokens": 10}),
                                                 ("adapter_pfeiffer", {"dim": 8})])
def test_a_training_step_is_within_15_percent_of_torch_flop_counter(tiny_vit, method, hparams):
    """Forward + backward of a real step (the mini ViT with the method attached) counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    from peftlab.methods import attach

    model = attach(tiny_vit(num_classes=10), method, hparams)
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 32, 32)).sum().backward()
    estimate = cost.RunKind.of(method, hparams).step_flops(cost.architecture("vit_mini_patch8_32"), 32)
    assert estimate == pytest.approx(counter.get_total_flops(), rel=0.15)


def test_split_sizes_from_the_generator_the_lists_and_the_tables(tmp_path):
    tiny = study_of(TINY, tmp_path)
    assert cost.split_sizes(tiny, "digits") == {"train800": 800, "val200": 200, "train800val200": 1000, "test": 64,
                                                "shift-style": 64}
    assert cost.split_sizes(tiny, "upstream") == {"train": 220, "val": 20}
    paper = study_of(PAPER, tmp_path)
    assert cost.split_sizes(paper, "kitti")["test"] == 711  # a folder alias of kitti_distance
    folder = tmp_path / "data" / "vtab-1k" / "mytask"
    (folder / "shift").mkdir(parents=True)
    for name, count in (("train800", 8), ("val200", 2), ("test", 5), ("shift/blur", 3)):
        (folder / f"{name}.txt").write_text("".join(f"img{i}.png {i % 2}\n" for i in range(count)) + "\n")
    (folder / "shift" / "blur.classes.txt").write_text("0 1\n")
    assert cost.split_sizes(paper, "mytask") == {"train800": 8, "val200": 2, "test": 5, "shift-blur": 3}
    assert cost.split_sizes(paper, "imagenet")["shift-imagenet_sketch"] == 50889
    with pytest.raises(PeftlabError, match="split sizes unknown"):
        cost.split_sizes(paper, "nosuchtask")


def test_large_study_resources_follow_the_estimate(tmp_path):
    base = study_of(PAPER, tmp_path)
    longer = study_of(PAPER, tmp_path, training={"epochs": 200})
    search, search_longer = (cost.step_resources(s, "search") for s in (base, longer))
    assert search.gpu == 1
    assert search_longer.runtime / search.runtime == pytest.approx(2.0, rel=0.02)
    assert STEPS["search"].jobs(base)[0].resources == search
    # the costliest search job (80 trials of adapter_lora_init or convpass) sets the step's runtime
    priced = cost.estimate(base)
    costliest = max(priced.jobs, key=lambda job: priced.seconds(job) if job.step == "search" else 0)
    assert costliest.runs == 80
    assert search.runtime == math.ceil(cost.RUNTIME_SAFETY * priced.seconds(costliest) / 60)
    # final runs hold the test set in memory: dsprites' 73,728 images at 224 px need more than the floor
    small_tests = study_of(PAPER, tmp_path, study={"tasks": ["kitti_distance", "dtd"]})
    assert cost.step_resources(base, "train").mem_mb > cost.step_resources(small_tests, "train").mem_mb
    assert cost.step_resources(base, "train").mem_mb >= cost.MEMORY_SAFETY * 73728 * 3 * 224 ** 2 / 2 ** 20


def test_a_cheap_large_study_gets_the_floors(tmp_path):
    cheap = study_of(PAPER, tmp_path, study={"tasks": ["kitti_distance"], "methods": ["linear"]},
                     training={"epochs": 1}, manyshot=None)
    assert cost.step_resources(cheap, "search") == Resources(mem_mb=cost.MEMORY_FLOOR_MB,
                                                              runtime=cost.RUNTIME_FLOOR_MIN, gpu=1)


def test_the_mini_study_keeps_small_resources(tmp_path):
    default = study_of("params.yaml", tmp_path)
    assert STEPS["search"].resources(default) == Resources(mem_mb=4000, runtime=120, gpu=1)
    assert cost.device_class(default) == "cpu" and cost.estimate(default).anchor.unit == "CPU-h"


def test_cost_command_prices_a_study_before_its_data_exists(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no data root, no weights file
    assert main(["pipeline", "cost", "--config", str(PROJECT / PAPER)]) == 0
    out = capsys.readouterr().out
    assert str(4 * (sum(PAPER_GRID_POINTS.values()) + sum(EXTENSION_GRID_POINTS.values())) * 19) in out and "total" in out and "ESTIMATE, not measured on a GPU" in out and "cost per image" in out


def test_a_skipping_mode_reports_its_saving(paper):
    searches = [job.id for job in paper.jobs if job.step == "search"]
    saved = cost.saving(paper, searches)
    assert saved == paper.by_step()["search"]
    text = cost.render_cost(paper, {"published selections": saved})
    assert "published selections:" in text and "ESTIMATE, not measured on a GPU" in text
    assert "(0% of the estimate saved)" not in text


def test_cost_command_prints_what_published_selections_save(capsys):
    """The searches of the 16 methods with released VTAB-1k selections (all but partial, adapter_pfeiffer, vqt
    and the extension) on the 19 tasks: their trials are what ``search.published`` skips."""
    assert main(["pipeline", "cost", "--config", str(PROJECT / PAPER)]) == 0
    out = capsys.readouterr().out
    released_points = sum(PAPER_GRID_POINTS.values()) - PAPER_GRID_POINTS["partial"] \
        - PAPER_GRID_POINTS["adapter_pfeiffer"] - PAPER_GRID_POINTS["vqt"]
    saved = next(line for line in out.splitlines() if line.strip().startswith("saves"))
    assert saved.split()[1:3] == [str(16 * 19), str(4 * released_points * 19)]
    assert "published selections (off; search.published: true)" in out and "of the estimate saved" in out
