"""Learning-rate schedule values (docs/background.md: Training recipe) and the optimiser recipe."""

from types import SimpleNamespace

import pytest

from semhpc.config import load_config
from semhpc.runtime.schedule import WarmupExponentialDecay, make_optimizer, make_schedule


def lr_at(schedule, step):
    return float(schedule(step))


def test_exponential_decay_094_per_decay_period():
    s = WarmupExponentialDecay(start_lr=0.01, peak_lr=0.01, warmup_steps=0, decay_steps=100, decay_rate=0.94)
    assert lr_at(s, 0) == pytest.approx(0.01)
    assert lr_at(s, 100) == pytest.approx(0.01 * 0.94)
    assert lr_at(s, 250) == pytest.approx(0.01 * 0.94 ** 2.5, rel=1e-5)


def test_staircase_holds_within_a_period():
    s = WarmupExponentialDecay(0.01, 0.01, 0, 100, 0.94, staircase=True)
    assert lr_at(s, 99) == pytest.approx(0.01)
    assert lr_at(s, 199) == pytest.approx(0.01 * 0.94)


def test_warmup_ramps_linearly_to_scaled_peak_then_decays():
    s = WarmupExponentialDecay(start_lr=0.01, peak_lr=0.04, warmup_steps=10, decay_steps=100, decay_rate=0.94)
    assert lr_at(s, 0) == pytest.approx(0.01)
    assert lr_at(s, 5) == pytest.approx(0.025)
    assert lr_at(s, 10) == pytest.approx(0.04 * 0.94 ** 0.1, rel=1e-5)


def test_make_schedule_scales_by_world_size_and_uses_epochs_per_decay():
    cfg = load_config(overrides=["train.lr=0.01", "train.warmup_epochs=1", "train.num_epochs_per_decay=3"]).train
    s = make_schedule(cfg, steps_per_epoch=20, world_size=4)
    assert (s.start_lr, s.peak_lr, s.warmup_steps, s.decay_steps) == (0.01, 0.04, 20, 60)
    unscaled = make_schedule(SimpleNamespace(**{**vars(cfg), "scale_lr": False}), 20, 4)
    assert unscaled.peak_lr == 0.01 and unscaled.warmup_steps == 0


def test_rmsprop_uses_tf_slim_defaults():
    cfg = load_config().train
    opt = make_optimizer(cfg, make_schedule(cfg, 10, 1))
    assert type(opt).__name__ == "RMSprop"
    assert (opt.rho, opt.momentum, opt.epsilon) == (0.9, 0.9, 1.0)
