"""The thesis configs carry the thesis' protocol: test-split evaluations, the GPUs each run used
(and `semhpc submit` asks for them), and the reasons where semhpc departs from the thesis."""

from pathlib import Path

import pytest

from semhpc import cli
from semhpc.config import load_config

THESIS_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "thesis").glob("*.yaml"))
# De Nobili 2017: two Tesla K20 for chapter 3 unless said otherwise; Table 3.3 ran on four GTX-1070.
THESIS_GPUS = {"t31": 2, "t32": 2, "t33": 4, "t34": 2}


@pytest.mark.parametrize("path", THESIS_CONFIGS, ids=lambda p: p.stem)
def test_thesis_configs_follow_the_thesis_protocol(path):
    cfg = load_config(path)
    text = path.read_text()
    assert cfg.train.eval_split == "test"
    assert cfg.launch.gpus == THESIS_GPUS[path.stem[:3]]
    assert cfg.train.optimizer == "rmsprop" and "# Optimiser: the thesis calls" in text
    if cfg.train.mode == "feature_extraction":  # the thesis gives no epochs: the config says why it has some
        assert "# Epochs: invented." in text


def test_default_evaluation_split_is_validation():
    assert load_config(None).train.eval_split == "validation"
    assert load_config(None).launch.gpus == 0


def submitted_gpus(capsys, *argv) -> tuple[str, str]:
    assert cli.main(["submit", "--cluster", "leonardo-booster", "--job", "train", "--dry-run", *argv]) == 0
    script = capsys.readouterr().out.splitlines()
    return next(line for line in script if "--gres" in line), next(line for line in script if "--ntasks-per-node" in line)


def test_submit_of_a_thesis_config_asks_for_its_gpus(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    by_table = {stem: next(p for p in THESIS_CONFIGS if p.stem.startswith(stem)) for stem in ("t31", "t33")}
    assert submitted_gpus(capsys, "--", "--config", str(by_table["t31"])) == (
        "#SBATCH --gres=gpu:2", "#SBATCH --ntasks-per-node=2")
    assert submitted_gpus(capsys, "--", "--config", str(by_table["t33"])) == (
        "#SBATCH --gres=gpu:4", "#SBATCH --ntasks-per-node=4")
    # --gpus-per-node and --set launch.gpus override the config; 0 means the whole GPU node (leonardo-booster: 4)
    assert submitted_gpus(capsys, "--gpus-per-node", "1", "--", "--config", str(by_table["t33"]))[0] \
        == "#SBATCH --gres=gpu:1"
    assert submitted_gpus(capsys, "--", "--config", str(by_table["t31"]), "--set", "launch.gpus=0")[0] \
        == "#SBATCH --gres=gpu:4"


def test_more_config_gpus_than_a_node_has_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = next(p for p in THESIS_CONFIGS if p.stem.startswith("t33"))
    assert cli.main(["submit", "--cluster", "c3hpc", "--job", "train", "--dry-run", "--", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert f"{config}: launch.gpus is 4 but c3hpc nodes have 2 GPU(s)" in error and error.count("\n") == 1
