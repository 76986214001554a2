"""Transfer learning (weights restore without the logits, freezing per mode) and precision choice."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from semhpc.config import load_config
from semhpc.model import registry
from semhpc.runtime import transfer
from semhpc.runtime.precision import resolve_precision
from semhpc.utils.errors import SemhpcError

LOGITS = registry.get_spec("densenet28").logits_scopes


def _model(seed, name="densenet28"):
    tf.keras.utils.set_random_seed(seed)
    return registry.build(name, num_classes=10, input_size=32)


def test_restore_copies_every_layer_but_the_logits(tmp_path):
    source, target = _model(1), _model(2)
    source.save_weights(str(tmp_path / "w.h5"), save_format="h5")
    head_before = [w.numpy() for w in target.get_layer("predictions").weights]
    restored = transfer.restore_except_logits(target, tmp_path / "w.h5", LOGITS)
    assert restored == sum(1 for layer in target.layers if layer.weights) - 1
    for layer in target.layers:
        if layer.name == "predictions":
            for before, now in zip(head_before, layer.weights):
                np.testing.assert_array_equal(before, now.numpy())
        else:
            for mine, theirs in zip(layer.weights, source.get_layer(layer.name).weights):
                np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_restore_refuses_weights_of_another_architecture(tmp_path):
    _model(1, "densenet40").save_weights(str(tmp_path / "d40.h5"), save_format="h5")
    with pytest.raises(SemhpcError, match="d40.h5: layer .* has shapes"):
        transfer.restore_except_logits(_model(2), tmp_path / "d40.h5", LOGITS)


def test_restore_rejects_a_file_that_is_not_hdf5(tmp_path):
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(SemhpcError, match="junk.h5: not a readable Keras HDF5"):
        transfer.restore_except_logits(_model(2), tmp_path / "junk.h5", LOGITS)


def test_feature_extraction_trains_only_the_logits():
    model = _model(3)
    everything = len(model.trainable_variables)
    transfer.freeze_for_mode(model, "feature_extraction", LOGITS)
    assert {v.name.split("/")[0] for v in model.trainable_variables} == {"predictions"}
    transfer.freeze_for_mode(model, "fine_tune", LOGITS)
    assert len(model.trainable_variables) == everything


def test_inception_logits_scopes_cover_the_auxiliary_head():
    spec = registry.get_spec("inception_v3")
    assert transfer.is_logits_layer("aux_logits/conv1", spec.logits_scopes)
    assert transfer.is_logits_layer("predictions", spec.logits_scopes)
    assert not transfer.is_logits_layer("mixed7", spec.logits_scopes)


def test_imagenet_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    expected = tmp_path / "models" / transfer.IMAGENET_FILES["densenet121"]
    with pytest.raises(SemhpcError, match=f"stage {expected.name} at {expected}"):
        transfer.resolve_init_weights("imagenet", "densenet121")
    expected.parent.mkdir()
    expected.write_bytes(b"")
    assert transfer.resolve_init_weights("imagenet", "densenet121") == expected
    with pytest.raises(SemhpcError, match="no ImageNet weights for densenet28"):
        transfer.resolve_init_weights("imagenet", "densenet28")


def test_init_weights_from_a_run_directory(tmp_path):
    with pytest.raises(SemhpcError, match="has no final_weights.h5"):
        transfer.resolve_init_weights(str(tmp_path), "densenet28")
    (tmp_path / "latest_weights.h5").write_bytes(b"x")
    assert transfer.resolve_init_weights(str(tmp_path), "densenet28").name == "latest_weights.h5"
    (tmp_path / "final_weights.h5").write_bytes(b"x")
    assert transfer.resolve_init_weights(str(tmp_path), "densenet28").name == "final_weights.h5"
    assert transfer.resolve_init_weights("", "densenet28") is None


@pytest.mark.parametrize("requested, gpu, bf16, policy, scaling, noted", [
    ("fp32", True, True, "float32", False, False),
    ("mixed", True, False, "mixed_float16", True, False),
    ("mixed", False, True, "mixed_bfloat16", False, False),
    ("mixed", False, False, "float32", False, True),
])
def test_precision_follows_the_hardware(requested, gpu, bf16, policy, scaling, noted):
    chosen = resolve_precision(requested, has_gpu=gpu, cpu_has_bf16=bf16)
    assert (chosen.policy, chosen.loss_scaling, chosen.note is not None) == (policy, scaling, noted)


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[1].glob("configs/thesis/*.yaml")),
                         ids=lambda p: p.stem)
def test_thesis_configs_are_valid(path):
    cfg = load_config(path)
    spec = registry.get_spec(cfg.model.name)
    assert cfg.data.image_size >= spec.min_input_size
    assert (cfg.train.mode == "scratch") == (cfg.train.init_weights == "")
