"""Sharing a finished study: push to a remote, clone and pull elsewhere, and nothing needs re-running.

Two remotes: the project's default (a local directory beside the project, .dvc/config) and an S3-compatible
server (moto's, started here on 127.0.0.1 with a bounded lifetime).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pipeline_helpers import (
    BIN,
    copy_built,
    dvc,
    dvc_outputs,
    dvc_repro_ran,
    dvc_stale_stages,
    run,
    snakemake,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "peftlab-study"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def moto_s3(lifetime_s: int = 600):
    """moto's S3 server on 127.0.0.1 only; killed on exit, and by `timeout` should the test process die."""
    port = _free_port()
    server = subprocess.Popen(["timeout", str(lifetime_s), str(BIN / "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, **_boto_credentials()).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


def _boto_credentials() -> dict[str, str]:
    return {"aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
            "region_name": S3_ENV["AWS_DEFAULT_REGION"]}


def _clone_and_pull(origin: Path, clone: Path, remote_setup: list[list[str]] = (), remote: str | None = None) -> Path:
    run(["git", "clone", "-q", str(origin), str(clone)], origin.parent)
    for args in remote_setup:
        dvc(clone, *args)
    dvc(clone, "pull", *(["-r", remote] if remote else []), extra_env=S3_ENV)
    return clone


def _assert_same_outputs(origin: Path, clone: Path) -> None:
    files = dvc_outputs(origin)
    assert any(f.name == "peft.safetensors" for f in files) and any(f.name == "metrics.json" for f in files)
    for relative in files:
        assert (clone / relative).read_bytes() == (origin / relative).read_bytes(), relative
    assert dvc_stale_stages(clone) == set()


def _assert_nothing_to_do(clone: Path) -> None:
    ran, _ = dvc_repro_ran(clone)
    assert ran == set()
    # `dvc pull` gave every file a fresh mtime in no particular order, and Snakemake 9.27 compares mtimes whatever
    # --rerun-triggers says: `snakemake --touch` aligns them (DVC has just confirmed the content); then Snakemake
    # has nothing to do (without the mtime trigger, as after any pull, and with it).
    snakemake(clone, "--touch", "--cores", "1")
    result = snakemake(clone, "--dry-run", "--rerun-triggers", "params", "input", "code", "software-env")
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]
    assert dvc_stale_stages(clone) == set()


def test_push_to_the_default_local_remote_and_pull_in_a_fresh_clone(tiny_study, tmp_path):
    origin = copy_built(tiny_study.project, tmp_path / "project")
    dvc(origin, "push")  # the default remote: ../peftlab-dvc-remote, beside the project
    assert any((tmp_path / "peftlab-dvc-remote").rglob("*"))
    clone = _clone_and_pull(origin, tmp_path / "clone")  # beside the project too: same default remote
    _assert_same_outputs(origin, clone)
    _assert_nothing_to_do(clone)


def test_push_to_an_s3_compatible_remote_and_pull_in_a_fresh_clone(tiny_study, tmp_path):
    origin = copy_built(tiny_study.project, tmp_path / "project")
    with moto_s3() as endpoint:
        setup = [["remote", "add", "--local", "s3", f"s3://{BUCKET}/cache"],
                 ["remote", "modify", "--local", "s3", "endpointurl", endpoint]]
        for args in setup:
            dvc(origin, *args)
        dvc(origin, "push", "-r", "s3", extra_env=S3_ENV)
        clone = _clone_and_pull(origin, tmp_path / "elsewhere" / "clone", setup, remote="s3")
    _assert_same_outputs(origin, clone)  # what follows a pull is the same whichever remote it came from
