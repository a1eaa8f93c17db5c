"""The paper's study at full size: its DAG builds in both engines from a stand-in data root (empty task folders and
an empty weights file; no job runs). Times are printed (``-s``), not asserted."""

from __future__ import annotations

import time

import pytest
import yaml
from pipeline_helpers import PROJECT, copy_project, dvc, snakemake

from peftlab.cli import main as peftlab_main
from peftlab.data.tasks import VTAB_TASKS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
PAPER = "config/paper.yaml"


@pytest.fixture(scope="module")
def paper_project(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("paper") / "project")
    config = yaml.safe_load((PROJECT / PAPER).read_text())
    for task in config["study"]["tasks"]:
        (project / config["data"]["root"] / task).mkdir(parents=True)
    (project / config["backbone"]["weights"]).parent.mkdir(parents=True)
    (project / config["backbone"]["weights"]).write_bytes(b"")
    return project, config


def test_paper_config_covers_the_19_vtab_tasks(paper_project):
    _, config = paper_project
    assert sorted(config["study"]["tasks"]) == sorted(VTAB_TASKS)


def test_snakemake_builds_the_paper_dag(paper_project):
    project, config = paper_project
    started = time.perf_counter()
    result = snakemake(project, "--dry-run", "--quiet", "rules", config=PAPER)
    seconds = time.perf_counter() - started
    counts = dict(line.split() for line in result.stdout.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    print(f"\n[timing] snakemake -n --configfile {PAPER}: {seconds:.1f} s for {counts.get('total')} jobs")
    pairs = len(config["study"]["tasks"]) * len(config["study"]["methods"])
    assert int(counts["search"]) == int(counts["train"]) == pairs
    assert "generate" not in counts and "pretrain" not in counts


def test_dvc_status_on_the_paper_dvc_yaml(paper_project, monkeypatch):
    project, config = paper_project
    monkeypatch.chdir(project)
    assert peftlab_main(["pipeline", "dvc-yaml", "--config", PAPER]) == 0
    stages = len(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    started = time.perf_counter()
    result = dvc(project, "status", "--json")
    seconds = time.perf_counter() - started
    print(f"\n[timing] dvc status on the paper's dvc.yaml ({stages} stages): {seconds:.1f} s")
    assert len(yaml.safe_load(result.stdout)) == stages  # nothing has run yet: every stage is stale
