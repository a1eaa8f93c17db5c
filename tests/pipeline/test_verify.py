"""``peftlab verify`` on a minimal DVC project (no study needed): each file of each output in dvc.lock is checked,
an altered workspace file and a corrupt copy in the remote are named, intact files DVC left out are told apart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pipeline_helpers import BIN, commit_all, dvc, run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DVC_YAML = """stages:
  make:
    cmd: mkdir -p out && printf hello > out/a.bin && printf world > out/b.bin && printf '{"x":1}' > m.json
    outs:
    - out
    metrics:
    - m.json
"""


def verify(project: Path):
    return run([str(BIN / "peftlab"), "verify"], project, check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """``<base>/project`` (git + DVC, one stage run and pushed) and ``<base>/remote``, its remote (by a relative
    path, so a copy of ``<base>`` is a project with its own remote)."""
    base = tmp_path_factory.mktemp("verify")
    root = base / "project"
    root.mkdir()
    run(["git", "init", "-q", "-b", "main"], root)
    dvc(root, "init", "-q")
    dvc(root, "remote", "add", "-d", "store", "../remote")  # relative to here; DVC stores it relative to .dvc/
    dvc(root, "remote", "modify", "store", "verify", "true")
    (root / "dvc.yaml").write_text(DVC_YAML)
    dvc(root, "repro", "-q")
    dvc(root, "push", "-q")
    commit_all(root, "results")
    return base


@pytest.fixture
def project(built, tmp_path) -> Path:
    return shutil.copytree(built, tmp_path / "copy", symlinks=True) / "project"


def test_an_intact_project_passes(project):
    result = verify(project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3 files recorded in dvc.lock: all present with their recorded content\n"


def test_a_file_altered_in_the_workspace_is_named(project):
    (project / "out/b.bin").write_bytes(b"WORLD")
    result = verify(project)
    assert result.returncode == 2
    assert result.stdout.startswith("out/b.bin: content differs from dvc.lock (md5 ")
    assert result.stderr == f"peftlab: error: 1 of 3 files recorded in dvc.lock failed verification (listed " \
                            f"above), first {result.stdout.strip()}\n"


def test_a_corrupt_copy_in_the_remote_is_named_and_its_intact_sibling_told_apart(project, tmp_path):
    import hashlib

    stored = project.parent / "remote/files/md5" / hashlib.md5(b"hello").hexdigest()[:2] / \
        hashlib.md5(b"hello").hexdigest()[2:]
    stored.chmod(0o644)
    stored.write_bytes(b"HELLO")
    clone = project.parent / "clone"  # beside the project: the same remote
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert dvc(clone, "pull", check=False).returncode != 0
    lines = verify(clone).stdout.splitlines()
    assert lines[0].startswith("out/a.bin: missing: the remote's copy is corrupt (its content has md5 "
                               f"{hashlib.md5(b'HELLO').hexdigest()}")
    assert lines[1].startswith("out/b.bin: not checked out: its copy in the remote is intact")
    assert len(lines) == 2


def test_outside_a_dvc_project_it_says_so(tmp_path):
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    result = verify(tmp_path)
    assert result.returncode == 2 and result.stderr == "peftlab: error: .: not a DVC repository (no .dvc folder)\n"
