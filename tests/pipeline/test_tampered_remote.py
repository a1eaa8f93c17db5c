"""A file altered in a DVC remote is reported by name and nothing runs on it: the project's default remote (a local
directory, which verifies downloads: .dvc/config) and an S3 server (moto), told to verify as the docs say.

The altered files: a checkpoint inside a directory output (``runs/``), which DVC without ``verify`` pulls as it
is and then calls up to date, and a single-file output (a summary ``metrics.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import BIN, TINY, copy_built, dvc, run
from test_sharing import BUCKET, S3_ENV, _boto_credentials, moto_s3

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CHECKPOINT = "results/final/digits/lora/runs/seed0/peft.safetensors"
SUMMARY = "results/final/digits/lora/metrics.json"
ROBUSTNESS = ["robustness", "--task", "digits", "--method", "lora", "--config", TINY, "--runs",
              "results/final/digits/lora/runs", "--out", "results/robustness/digits/lora/wise.csv"]


def recorded_md5(project: Path, relpath: str) -> str:
    """The md5 under which DVC stores ``relpath`` (a file of a directory output looked up in its listing)."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == relpath:
                return out["md5"]
            if relpath.startswith(out["path"] + "/") and out["md5"].endswith(".dir"):
                listing = project / ".dvc/cache/files/md5" / out["md5"][:2] / out["md5"][2:]
                inner = relpath[len(out["path"]) + 1:]
                return next(e["md5"] for e in json.loads(listing.read_text()) if e["relpath"] == inner)
    raise KeyError(relpath)


def object_key(md5: str) -> str:
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def altered(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def peftlab_in(project: Path, *args: str):
    return run([str(BIN / "peftlab"), *args], project, check=False)


def assert_reported_by_name(result, reasons: dict[str, str]) -> None:
    """``peftlab verify`` failed naming each altered file with its reason; any other file it lists is one DVC
    left out with an altered one (a directory output is checked out whole)."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    for relpath, reason in reasons.items():
        assert any(line.startswith(f"{relpath}: {reason}") for line in lines), (relpath, result.stdout[-3000:])
    others = [line for line in lines if not line.startswith(tuple(f"{path}: " for path in reasons))]
    assert all(line.startswith(str(Path(CHECKPOINT).parent)) and ": not checked out: its copy in the remote is "
               "intact" in line for line in others), others
    assert {line.split(": ")[0] for line in lines[:len(reasons)]} == set(reasons)  # the altered files first
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"peftlab: error: {len(lines)} of ")


def test_a_file_altered_in_the_local_remote_is_named_and_never_used(tiny_study, tmp_path):
    origin = copy_built(tiny_study.project, tmp_path / "project")
    dvc(origin, "push")
    remote = tmp_path / "peftlab-dvc-remote"  # the default remote, beside the project (.dvc/config)
    for relpath in (CHECKPOINT, SUMMARY):
        stored = remote / object_key(recorded_md5(origin, relpath))
        stored.chmod(0o644)
        stored.write_bytes(altered(stored.read_bytes()))

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    pulled = dvc(clone, "pull", check=False)
    assert pulled.returncode != 0  # DVC re-hashed the downloads and refused both
    assert not (clone / CHECKPOINT).exists() and not (clone / SUMMARY).exists()
    assert_reported_by_name(peftlab_in(clone, "verify"), {
        CHECKPOINT: "missing: the remote's copy is corrupt",
        # DVC 3.67 deleted the altered copy of the single-file output from the remote while pulling it
        SUMMARY: "missing: neither the local cache nor the remote holds it"})
    result = peftlab_in(clone, *ROBUSTNESS)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    # DVC refused the whole directory output, so the first file the step reads is already missing
    assert result.stderr.startswith("peftlab: error: results/final/digits/lora/runs/seed0/metrics.json: not found")

    # A remote without `verify` (DVC's default for remotes users add): DVC checks the altered checkpoint out and
    # calls it up to date; peftlab names it, and refuses to load it.
    unverified = tmp_path / "unverified"
    run(["git", "clone", "-q", str(origin), str(unverified)], tmp_path)
    dvc(unverified, "remote", "modify", "--local", "local", "verify", "false")
    dvc(unverified, "pull", check=False)
    assert (unverified / CHECKPOINT).read_bytes() == altered((origin / CHECKPOINT).read_bytes())
    result = peftlab_in(unverified, "verify")
    assert result.returncode == 2
    assert f"{CHECKPOINT}: content differs from dvc.lock" in result.stdout, result.stdout[-3000:]
    result = peftlab_in(unverified, *ROBUSTNESS)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("peftlab: error: results/final/digits/lora/runs/seed0/peft.safetensors: content "
                                    "does not match the sha256 recorded in results/final/digits/lora/runs/seed0/"
                                    "metrics.json")
    wise = "results/robustness/digits/lora/wise.csv"  # pulled intact; the refused job did not rewrite it
    assert (unverified / wise).read_bytes() == (origin / wise).read_bytes()


def test_a_file_altered_in_an_s3_remote_is_named(tiny_study, tmp_path):
    import boto3

    origin = copy_built(tiny_study.project, tmp_path / "project")
    with moto_s3() as endpoint:
        setup = [["remote", "add", "--local", "s3", f"s3://{BUCKET}/cache"],
                 ["remote", "modify", "--local", "s3", "endpointurl", endpoint],
                 ["remote", "modify", "--local", "s3", "verify", "true"]]
        for args in setup:
            dvc(origin, *args)
        dvc(origin, "push", "-r", "s3", extra_env=S3_ENV)
        s3 = boto3.client("s3", endpoint_url=endpoint, **_boto_credentials())
        for relpath in (CHECKPOINT, SUMMARY):
            key = f"cache/{object_key(recorded_md5(origin, relpath))}"
            body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            s3.put_object(Bucket=BUCKET, Key=key, Body=altered(body))

        clone = tmp_path / "clone"
        run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
        for args in setup:
            dvc(clone, *args)
        assert dvc(clone, "pull", "-r", "s3", check=False, extra_env=S3_ENV).returncode != 0
        assert not (clone / CHECKPOINT).exists()
        result = run([str(BIN / "peftlab"), "verify", "--remote", "s3"], clone, check=False, extra_env=S3_ENV)
        print(result.stdout, result.stderr)
        assert_reported_by_name(result, {CHECKPOINT: "missing: the remote's copy is corrupt",
                                         SUMMARY: "missing: the remote's copy is corrupt"})
