from pathlib import Path

import pytest
import yaml

from peftlab.config import expand_grid, load_config, search_points
from peftlab.errors import PeftlabError

ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp_path, mutate):
    config = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(config)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_default_params_are_valid():
    config = load_config(ROOT / "params.yaml", check_data=False)
    assert config["study"]["methods"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["training"].update(epochs=-1), "key 'training.epochs'"),
        (lambda c: c["training"].update(epochs="ten"), "key 'training.epochs'"),
        (lambda c: c["study"]["methods"].append("no_such_method"), "key 'study.methods': unknown method 'no_such_method'"),
        (lambda c: c["grids"].update(lora={"rank": [-1]}), "key 'grids.lora': lora: rank=-1"),
        (lambda c: c["grids"].update(lora={"rnak": [8]}), "key 'grids.lora': lora: unknown hyper-parameter 'rnak'"),
        (lambda c: c["training"].update(optimiser="sgd"), "'optimiser' was unexpected"),
        (lambda c: c["manyshot"].update(tasks=["elsewhere"]), "key 'manyshot.tasks'"),
        (lambda c: c["training"].update(head_init="file"), "key 'training.head_init_file': required"),
        (lambda c: c["training"].update(head_init="file", head_init_file=None), "key 'training.head_init_file'"),
        (lambda c: c["training"].update(head_init="file", head_init_file=3), "key 'training.head_init_file'"),
        (lambda c: c["training"].update(head_init="zeros", head_init_file="h.safetensors"),
         "key 'training.head_init_file': given, but training.head_init is 'zeros'"),
        (lambda c: c["training"].update(head_init="text"), "key 'training.head_init'"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, mutate, message):
    path = write_config(tmp_path, mutate)
    with pytest.raises(PeftlabError) as error:
        load_config(path, check_data=False)
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_head_init_file_with_its_file_is_valid(tmp_path):
    path = write_config(tmp_path, lambda c: c["training"].update(head_init="file", head_init_file="h.safetensors"))
    assert load_config(path, check_data=False)["training"]["head_init_file"] == "h.safetensors"


def test_missing_data_root_of_a_user_data_study_is_named(tmp_path):
    def user_data(config):
        config["data"]["generate"] = None
        config["data"]["root"] = str(tmp_path / "vtab-1k")

    path = write_config(tmp_path, user_data)
    with pytest.raises(PeftlabError, match="key 'data.root': data root .*vtab-1k does not exist"):
        load_config(path)


def test_grid_order_is_lr_then_wd_then_method_keys():
    config = {"search": {"lr": [1e-3, 1e-2], "weight_decay": [1e-4]}, "grids": {"lora": {"rank": [1, 8]}}}
    points = search_points(config, "lora")
    assert points == [
        {"lr": 1e-3, "weight_decay": 1e-4, "rank": 1},
        {"lr": 1e-3, "weight_decay": 1e-4, "rank": 8},
        {"lr": 1e-2, "weight_decay": 1e-4, "rank": 1},
        {"lr": 1e-2, "weight_decay": 1e-4, "rank": 8},
    ]
    assert list(expand_grid(None)) == [{}]


def test_schema_is_shared_with_the_workflow():
    assert (ROOT / "workflow/schemas/config.schema.yaml").resolve() == (
        ROOT / "src/peftlab/schemas/config.schema.yaml"
    ).resolve()
