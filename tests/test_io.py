import json

import pytest

from peftlab.errors import PeftlabError
from peftlab.io import atomic_path, read_json, write_json


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"accuracy": 0.5})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"accuracy": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_json_is_key_sorted_and_rejects_nan(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": 2})
    assert (tmp_path / "a.json").read_text().index('"a"') < (tmp_path / "a.json").read_text().index('"b"')
    with pytest.raises(ValueError):
        write_json(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists()


def test_read_json_names_missing_and_malformed_files(tmp_path):
    with pytest.raises(PeftlabError, match="best.json: hparams file not found"):
        read_json(tmp_path / "best.json", what="hparams file")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(PeftlabError, match=r"bad.json: malformed JSON file \(line 1"):
        read_json(bad)


def test_saved_tensors_have_sorted_metadata_and_load_back(tmp_path):
    import torch
    from safetensors import safe_open

    from peftlab.io import save_tensors

    metadata = {key: f"value {key}" for key in ("zeta", "alpha", "mu", "beta", "omega", "delta")}
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"b": torch.arange(3.0), "a": torch.ones(2, 2, dtype=torch.int64)}, metadata=metadata)
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert list(header["__metadata__"]) == sorted(metadata)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == metadata
        assert handle.get_tensor("b").tolist() == [0.0, 1.0, 2.0]
        assert handle.get_tensor("a").tolist() == [[1, 1], [1, 1]]
