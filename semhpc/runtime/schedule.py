"""Learning-rate schedule and optimisers of the thesis recipe (docs/background.md: Training recipe), made distributed.

lr(step) = peak * decay ** (step / decay_steps)      (exponential decay, TF-Slim style)
with peak = lr x ranks when `scale_lr` (Goyal et al.: bigger global batch, bigger LR) and a linear
warmup from lr to peak over the first `warmup_epochs`, so the scaled LR does not blow up the
first steps. decay_steps = steps_per_epoch x num_epochs_per_decay.
"""

from __future__ import annotations

import tensorflow as tf


class WarmupExponentialDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from `start_lr` to `peak_lr`, then exponential decay of `peak_lr`."""

    def __init__(self, start_lr, peak_lr, warmup_steps, decay_steps, decay_rate, staircase=False):
        super().__init__()
        self.start_lr = float(start_lr)
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = max(1.0, float(decay_steps))
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        periods = step / self.decay_steps
        if self.staircase:
            periods = tf.floor(periods)
        decayed = self.peak_lr * tf.pow(self.decay_rate, periods)
        if self.warmup_steps == 0:
            return decayed
        ramp = self.start_lr + (self.peak_lr - self.start_lr) * step / float(self.warmup_steps)
        return tf.where(step < self.warmup_steps, ramp, decayed)

    def get_config(self):
        return {"start_lr": self.start_lr, "peak_lr": self.peak_lr, "warmup_steps": self.warmup_steps,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate, "staircase": self.staircase}


def make_schedule(train_cfg, steps_per_epoch: int, world_size: int) -> WarmupExponentialDecay:
    peak = train_cfg.lr * (world_size if train_cfg.scale_lr else 1)
    return WarmupExponentialDecay(
        start_lr=train_cfg.lr,
        peak_lr=peak,
        warmup_steps=round(train_cfg.warmup_epochs * steps_per_epoch) if peak != train_cfg.lr else 0,
        decay_steps=steps_per_epoch * train_cfg.num_epochs_per_decay,
        decay_rate=train_cfg.lr_decay,
        staircase=train_cfg.staircase,
    )


def make_optimizer(train_cfg, schedule) -> tf.keras.optimizers.Optimizer:
    """RMSProp with TF-Slim defaults (decay 0.9, momentum 0.9, epsilon 1.0), SGD+momentum or Adam."""
    if train_cfg.optimizer == "rmsprop":
        return tf.keras.optimizers.RMSprop(
            learning_rate=schedule, rho=train_cfg.rmsprop_decay,
            momentum=train_cfg.momentum, epsilon=train_cfg.epsilon,
        )
    if train_cfg.optimizer == "sgd":
        return tf.keras.optimizers.SGD(learning_rate=schedule, momentum=train_cfg.momentum)
    return tf.keras.optimizers.Adam(learning_rate=schedule)
