"""Config validation: defaults, YAML, overrides, and one-line errors naming the key."""

import pytest
import yaml

from semhpc.config import load_config, save_config
from semhpc.config.schema import SCHEMA
from semhpc.utils.errors import SemhpcError


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_cover_every_schema_key():
    cfg = load_config()
    for section, fields in SCHEMA.items():
        for key, field in fields.items():
            assert getattr(getattr(cfg, section), key) == field.default


def test_yaml_then_override_precedence(tmp_path):
    path = write(tmp_path, "train:\n  batch_size: 8\n  lr: 0.5\nmodel:\n  name: densenet121\n")
    cfg = load_config(path, ["train.batch_size=32", "synth.size=[64, 48]"])
    assert cfg.train.batch_size == 32          # override beats file
    assert cfg.train.lr == 0.5                 # file beats default
    assert cfg.model.name == "densenet121"
    assert cfg.synth.size == [64, 48]
    assert cfg.train.epochs == SCHEMA["train"]["epochs"].default


def test_every_number_has_a_range_that_contains_its_default():
    for section, fields in SCHEMA.items():
        for key, field in fields.items():
            if field.kind in ("int", "float", "list[int]", "list[float]"):
                assert field.minimum is not None and field.maximum is not None, f"{section}.{key}"
                values = field.default if isinstance(field.default, list) else [field.default]
                assert all(field.minimum <= value <= field.maximum for value in values), f"{section}.{key}"


@pytest.mark.parametrize("override, message", [
    ("data.image_size=99999999", "data.image_size = 99999999 must be between 16 and 1024"),
    ("model.dropout=1.5", "model.dropout = 1.5 must be between 0 and 0.9"),
    ("train.lr=.nan", "train.lr = nan must be between 0 and 10"),
    ("train.seed=-1", "train.seed = -1 must be between 0 and 2147483647"),
    ("ingest.size=[100000, 100000]", "ingest.size = [100000, 100000] must be between 16 and 4096"),
    ("ingest.size=[128, 96, 3]", "ingest.size = [128, 96, 3] must hold 2 items"),
    ("train.num_epochs_per_decay=0", "must be between 0.01 and 100000"),
])
def test_numbers_out_of_range_are_one_line(override, message):
    with pytest.raises(SemhpcError) as err:
        load_config(overrides=[override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_int_is_accepted_for_float_but_not_bool():
    assert load_config(overrides=["train.lr=1"]).train.lr == 1.0
    with pytest.raises(SemhpcError, match=r"train.lr = True is not a valid float"):
        load_config(overrides=["train.lr=true"])


@pytest.mark.parametrize("text, message", [
    ("train:\n  bach_size: 4\n", "unknown key 'train.bach_size'; did you mean 'train.batch_size'?"),
    ("trian:\n  epochs: 4\n", "unknown section 'trian'; did you mean 'train'?"),
    ("train:\n  batch_size: four\n", "train.batch_size = 'four' is not a valid int"),
    ("train:\n  optimizer: lamb\n", "train.optimizer = 'lamb' must be one of: rmsprop, sgd, adam"),
    ("train:\n  epochs: 0\n", "train.epochs = 0 must be between 1 and 100000"),
    ("synth:\n  size: [64, x]\n", "synth.size = [64, 'x'] is not a valid list[int]"),
    ("- just\n- a list\n", "top level must be a mapping"),
    ("train: [1, 2]\n", "section 'train' must be a mapping"),
])
def test_bad_config_gives_one_line_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SemhpcError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_yaml_reports_line(tmp_path):
    path = write(tmp_path, "train:\n  batch_size: [1, 2\n")
    with pytest.raises(SemhpcError, match=r"invalid YAML \(line \d+, column \d+\)"):
        load_config(path)


def test_missing_file_and_bad_override_syntax(tmp_path):
    with pytest.raises(SemhpcError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(SemhpcError, match="expected section.key=value"):
        load_config(overrides=["batch_size=3"])


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(overrides=["train.epochs=7", "model.name=alexnet"])
    saved = save_config(cfg, tmp_path / "run")
    assert yaml.safe_load(saved.read_text())["train"]["epochs"] == 7
    assert load_config(saved).as_dict() == cfg.as_dict()


def test_cli_prints_one_error_line(tmp_path, capsys):
    from semhpc.cli import main

    path = write(tmp_path, "train:\n  epoch: 3\n")
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"semhpc train: error: {path}: unknown key 'train.epoch'; did you mean 'train.epochs'?"]
