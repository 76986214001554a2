"""Model builders and registry: keras-identical graphs, docs/background.md: Models sizes, names, preprocessing.

Models are built at small inputs wherever the parameter count does not depend on the size
(DenseNet, Inception); AlexNet/VGG counts at their default size come from `describe`, which
builds in a throwaway graph without allocating weights.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from semhpc import cli
from semhpc.model import densenet as densenet_module
from semhpc.model import registry
from semhpc.model.densenet import DENSENET_VARIANTS
from semhpc.utils.errors import SemhpcError

# De Nobili 2017, Table 2.1: "number of parameters (weights and biases)" with the classifier head.
TABLE_2_1 = {
    "densenet121": 6.9e6,
    "densenet91": 4.0e6,
    "densenet40": 2.7e6,
    "densenet28": 2.0e6,
    "inception_v3": 27.1e6,
    "alexnet": 50.3e6,
}
# Every row is held to 3% but DenseNet-28: the network the thesis describes (k=56, blocks [2, 6, 4],
# two transitions, one stem conv, one FC, cut down from its DenseNet-121) has 2,099,818 weights and
# biases, 5% above the table's "~2M", on every counting basis (see the test below). The only part
# the thesis leaves open is the stem's width; semhpc keeps DenseNet-121's 64 filters, and only a
# stem of 43 filters or fewer would come within 3%, which nothing in the thesis supports.
TABLE_2_1_TOLERANCE = {"densenet28": 0.055}
# Published sizes of the models the thesis trained outside Table 2.1 (1000 classes, no aux head):
# Szegedy et al. 2017 / keras applications.
PUBLISHED_PARAMS = {"inception_v4": 42.7e6, "inception_resnet_v2": 55.8e6}
KERAS_INCEPTION_RESNET_V2_PARAMS = 55_873_736
KERAS_DENSENET121_PARAMS = 7_047_754  # docs/background.md: Models: keras DenseNet121 with 10 classes


def weighted_layers(model):
    return [layer for layer in model.layers if layer.weights]


def conv_and_fc_blocks(model) -> list[str]:
    return [registry.layer_block(layer.name) for layer in model.layers
            if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense))]


def random_images(size: int, batch: int = 2) -> np.ndarray:
    return np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)


def perturbed(weights: list[np.ndarray]) -> list[np.ndarray]:
    """Slightly different weights (zero-mean noise keeps activations in range)."""
    rng = np.random.default_rng(1)
    return [w + rng.normal(0, 1e-3, w.shape).astype(w.dtype) for w in weights]


def assert_same_outputs(model, other, size: int):
    images = random_images(size)
    outputs = model(images, training=False).numpy().astype(np.float64)
    assert np.isfinite(outputs).all() and outputs.std() > 0
    np.testing.assert_allclose(outputs, other(images, training=False), rtol=1e-5, atol=1e-8)


def assert_logits(model):
    assert model.get_layer("predictions").activation is tf.keras.activations.linear


@pytest.fixture(scope="module")
def densenet121_pair():
    ours = registry.build("densenet121", input_size=32)
    keras = tf.keras.applications.DenseNet121(weights=None, classes=10, input_shape=(32, 32, 3),
                                              classifier_activation=None)
    return ours, keras


@pytest.fixture(scope="module")
def inception_pair():
    ours = registry.build("inception_v3", input_size=75)
    keras = tf.keras.applications.InceptionV3(weights=None, classes=10, input_shape=(75, 75, 3),
                                              classifier_activation=None)
    return ours, keras


def test_densenet121_is_the_keras_graph_and_loads_keras_weights_by_name(densenet121_pair, tmp_path):
    ours, keras = densenet121_pair
    assert ours.count_params() == keras.count_params() == KERAS_DENSENET121_PARAMS
    assert [layer.name for layer in weighted_layers(ours)] == [layer.name for layer in weighted_layers(keras)]
    assert [w.shape for w in ours.weights] == [w.shape for w in keras.weights]
    assert_logits(ours)

    # ImageNet files are keras .h5 weight files: loading one by layer name must give keras's outputs.
    keras.save_weights(tmp_path / "keras.h5")
    ours.load_weights(tmp_path / "keras.h5", by_name=True)
    assert_same_outputs(ours, keras, 32)


def test_densenet121_set_weights_from_keras_gives_identical_outputs(densenet121_pair):
    ours, keras = densenet121_pair
    keras.set_weights(perturbed(keras.get_weights()))  # not the weights the previous test loaded
    ours.set_weights(keras.get_weights())
    assert_same_outputs(ours, keras, 32)


def test_inception_v3_main_path_is_the_keras_graph(inception_pair, tmp_path):
    ours, keras = inception_pair
    assert ours.count_params() == keras.count_params()
    assert [w.shape for w in ours.weights] == [w.shape for w in keras.weights]
    assert_logits(ours)

    ours.set_weights(keras.get_weights())
    assert_same_outputs(ours, keras, 75)

    # Keras's own names are counters (conv2d_57), so ImageNet files load by topology.
    keras.set_weights(perturbed(keras.get_weights()))
    keras.save_weights(tmp_path / "keras.h5")
    ours.load_weights(tmp_path / "keras.h5")
    assert_same_outputs(ours, keras, 75)


def test_inception_v3_aux_logits_head(inception_pair):
    spec = registry.get_spec("inception_v3")
    assert spec.aux_loss_weight == 0.4
    model = registry.build("inception_v3", input_size=75, aux_logits=True)
    logits, aux = model(random_images(75), training=True)
    assert logits.shape == aux.shape == (2, 10)

    aux_layers = [layer for layer in weighted_layers(model) if registry.layer_block(layer.name) == "aux_logits"]
    assert [type(layer).__name__ for layer in aux_layers] == [
        "Conv2D", "BatchNormalization", "Conv2D", "BatchNormalization", "Dense"]
    # Outside the logits scopes the aux model is the plain model, in the same weight order, so a
    # transfer-learning restore that skips `logits_scopes` lines up with keras/ImageNet files.
    ours, _ = inception_pair
    body = [w.shape for layer in weighted_layers(model) if not layer.name.startswith(spec.logits_scopes)
            for w in layer.weights]
    plain_body = [w.shape for layer in weighted_layers(ours) if not layer.name.startswith(spec.logits_scopes)
                  for w in layer.weights]
    assert body == plain_body

    # At the default 299 px it is TF-Slim's / torchvision's head: 5x5 conv on the pooled 5x5 map.
    with tf.Graph().as_default():  # shapes only, no weights allocated
        full_size = registry.build("inception_v3", aux_logits=True)
        assert full_size.get_layer("aux_logits/conv2_conv").kernel.shape == (5, 5, 128, 768)


def test_aux_logits_on_a_model_without_aux_head_is_refused():
    with pytest.raises(SemhpcError, match="densenet28 has no auxiliary.*inception_v3"):
        registry.build("densenet28", input_size=32, aux_logits=True)


@pytest.mark.parametrize("name", sorted(DENSENET_VARIANTS))
def test_densenet_variants_match_reference_size_and_layer_count(name):
    growth_rate, blocks = DENSENET_VARIANTS[name]
    row = registry.describe(name, input_size=32)
    print(f"{name}: {row['params']:,} parameters with 10 classes")
    assert row["params"] == pytest.approx(TABLE_2_1[name], rel=0.10)
    depth_in_name = int(re.search(r"\d+$", name).group())
    convention = 1 + 2 * sum(blocks) + (len(blocks) - 1) + 1  # stem + dense layers + transitions + FC
    assert row["layers"] == convention == depth_in_name


def test_densenet28_is_three_blocks_two_transitions_one_stem_conv_one_fc():
    assert DENSENET_VARIANTS["densenet28"] == (56, (2, 6, 4))
    blocks = conv_and_fc_blocks(registry.build("densenet28", input_size=32))
    dense_layers = [block for block in blocks if "_block" in block]
    assert {block.split("_")[0] for block in dense_layers} == {"conv2", "conv3", "conv4"}
    assert len(dense_layers) == 2 * (2 + 6 + 4)
    assert sorted(set(blocks) - set(dense_layers)) == ["conv1", "pool2", "pool3", "predictions"]


@pytest.mark.parametrize("name", sorted(TABLE_2_1))
def test_parameters_on_the_thesis_basis_match_table_2_1(name):
    spec = registry.get_spec(name)
    # DenseNets' counts do not depend on the input size; AlexNet's FC and Inception's aux head do.
    size = 32 if name.startswith("densenet") else None
    basis = registry.thesis_basis(name, input_size=size)
    print(f"{name}: {basis}")
    assert basis["classes"] == spec.thesis_classes == {"inception_v3": 1001, "alexnet": 1000}.get(name, 10)
    assert basis["aux_logits"] == (name == "inception_v3")
    assert basis["trainable"] == pytest.approx(TABLE_2_1[name], rel=TABLE_2_1_TOLERANCE.get(name, 0.03))
    assert basis["trainable"] <= basis["params"]
    if name == "inception_v3":  # TF-Slim's ImageNet Inception-v3: 1001 classes with the aux head
        assert (basis["trainable"], basis["params"]) == (27_145_970, 27_182_194)
    if name == "alexnet":  # no BN: every parameter is a weight or a bias
        assert basis["trainable"] == basis["params"] == 50_303_912


def test_densenet28_is_5_percent_above_table_2_1_on_every_counting_basis():
    """Why DenseNet-28 alone is not held to 3%: no way of counting reaches "~2M" (10 or 12 classes,
    ImageNet's 1000 or 1001; trainable weights, all variables, or convolutions and dense layers only),
    and of the architecture only the stem's width is not in the thesis."""
    def counts(model):
        trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
        no_batchnorm = sum(int(np.prod(weight.shape)) for layer in model.layers
                           if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense))
                           for weight in layer.weights)
        return trainable, int(model.count_params()), no_batchnorm

    with tf.Graph().as_default():  # shapes only
        bases = {classes: counts(registry.build("densenet28", num_classes=classes, input_size=32))
                 for classes in (10, 12, 1000, 1001)}
        stems = {filters: counts(densenet_module.densenet((2, 6, 4), 56, input_size=32, stem_filters=filters))[0]
                 for filters in (16, 43, 44, 64, 112)}
    print(f"densenet28 (trainable, all, conv+dense) by classes: {bases}; trainable by stem filters: {stems}")
    assert bases[10][0] == stems[64] == 2_099_818
    assert min(min(basis) for basis in bases.values()) > 1.04 * TABLE_2_1["densenet28"]
    # 64 = DenseNet-121's stem (kept: shared first weights); 112 = DenseNet-BC's 2k rule; 16 = DenseNet's CIFAR stem.
    assert stems == {16: 2_010_106, 43: 2_058_358, 44: 2_062_088, 64: 2_099_818, 112: 2_192_410}
    assert stems[43] <= 1.03 * TABLE_2_1["densenet28"] < stems[44]


def test_alexnet_and_vgg11_sizes_and_layers():
    alexnet = registry.describe("alexnet")
    print(f"alexnet: {alexnet['params']:,} parameters at {alexnet['input_size']} px with 10 classes")
    assert alexnet["params"] == 50_303_912 - 990 * (4096 + 1)  # the 1000-class count minus 990 outputs
    assert alexnet["layers"] == 5 + 3
    assert registry.describe("vgg11", input_size=32)["layers"] == 8 + 3


def test_dropout_option_overrides_the_model_default():
    def dropout_rates(model):
        return [layer.rate for layer in model.layers if isinstance(layer, tf.keras.layers.Dropout)]

    assert dropout_rates(registry.build("densenet28", input_size=32)) == []
    assert dropout_rates(registry.build("densenet28", input_size=32, dropout=0.3)) == [0.3]
    assert dropout_rates(registry.build("alexnet", input_size=67)) == [0.5, 0.5]
    assert dropout_rates(registry.build("alexnet", input_size=67, dropout=0.2)) == [0.2, 0.2]


def test_layer_block_examples():
    examples = {
        "conv3_block4_2_conv": "conv3_block4",
        "conv1/conv": "conv1",
        "pool1": "pool1",
        "pool2_conv": "pool2",
        "bn": "bn",
        "predictions": "predictions",
        "conv2b_bn": "conv2b",
        "mixed5_branch7x7dbl_3_conv": "mixed5",
        "mixed10": "mixed10",
        "aux_logits/conv1_bn": "aux_logits",
        "fc6/dense": "fc6",
        "conv3_2/relu": "conv3_2",
    }
    assert {name: registry.layer_block(name) for name in examples} == examples


def expected_blocks() -> dict[str, set[str]]:
    """Every block of each architecture, from its description (heads are their own block)."""
    _, densenet121 = DENSENET_VARIANTS["densenet121"]
    dense_layers = {f"conv{stage + 2}_block{i + 1}" for stage, n in enumerate(densenet121) for i in range(n)}
    vgg_convs = {"conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"}
    return {
        "densenet121": {"input", "conv1", "pool1", "pool2", "pool3", "pool4", "bn", "relu", "avg_pool",
                        "predictions"} | dense_layers,
        "inception_v3": {"input", "conv1a", "conv2a", "conv2b", "pool3a", "conv3b", "conv4a", "pool5a",
                         "avg_pool", "predictions", "aux_logits"} | {f"mixed{i}" for i in range(11)},
        "inception_v4": {"input", "conv1a", "conv2a", "conv2b", "mixed3a", "mixed4a", "mixed5a", "mixed6a",
                         "mixed7a", "avg_pool", "predictions", "aux_logits"}
                        | {f"mixed5{letter}" for letter in "bcde"} | {f"mixed6{letter}" for letter in "bcdefgh"}
                        | {f"mixed7{letter}" for letter in "bcd"},
        "inception_resnet_v2": {"input", "conv1a", "conv2a", "conv2b", "pool3a", "conv3b", "conv4a", "pool5a",
                                "mixed5b", "mixed6a", "mixed7a", "conv7b", "avg_pool", "predictions", "aux_logits"}
                               | {f"block35_{i}" for i in range(1, 11)} | {f"block17_{i}" for i in range(1, 21)}
                               | {f"block8_{i}" for i in range(1, 11)},
        "alexnet": {"input", "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5",
                    "fc6", "fc7", "predictions"},
        "vgg11": {"input", "fc6", "fc7", "predictions"} | vgg_convs | {f"pool{i}" for i in range(1, 6)},
    }


def test_every_layer_maps_to_its_block(densenet121_pair):
    models = {
        "densenet121": densenet121_pair[0],
        "inception_v3": registry.build("inception_v3", input_size=75, aux_logits=True),
        "alexnet": registry.build("alexnet", input_size=67),
        "vgg11": registry.build("vgg11", input_size=32),
    }
    for name, model in models.items():
        blocks = {registry.layer_block(layer.name) for layer in model.layers}
        assert blocks == expected_blocks()[name], name
        assert all(layer.name.startswith(registry.layer_block(layer.name)) for layer in model.layers)
        assert_logits(model)
    # Each DenseNet dense layer is one block holding its two convolutions.
    dense_blocks = [block for block in conv_and_fc_blocks(models["densenet121"]) if "_block" in block]
    assert all(dense_blocks.count(block) == 2 for block in dense_blocks)


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_inception_v4_and_resnet_v2_layers_map_to_their_modules(name):
    with tf.Graph().as_default():  # names and shapes only, no weights allocated
        model = registry.build(name, input_size=75, aux_logits=True)
        blocks = [registry.layer_block(layer.name) for layer in model.layers]
        assert set(blocks) == expected_blocks()[name]
        assert all(layer.name.startswith(block) for layer, block in zip(model.layers, blocks))
        assert_logits(model)
        convs = conv_and_fc_blocks(model)
    # A module's convolutions all group under it: e.g. Inception-B has 10, an Inception-ResNet-B 4 + projection.
    per_block = {"inception_v4": {"mixed5b": 7, "mixed6b": 10, "mixed7b": 10, "mixed7a": 6},
                 "inception_resnet_v2": {"block35_1": 7, "block17_20": 5, "block8_10": 5, "conv7b": 1}}[name]
    assert {block: convs.count(block) for block in per_block} == per_block


def test_inception_v4_has_the_papers_grid_sizes_and_size():
    with tf.Graph().as_default():  # shapes only, no weights allocated
        model = registry.build("inception_v4", num_classes=1000, aux_logits=True)
        shapes = {name: tuple(model.get_layer(name).output.shape[1:]) for name in
                  ("conv2b", "mixed3a", "mixed4a", "mixed5a", "mixed5e", "mixed6a", "mixed6h", "mixed7a", "mixed7d")}
        aux_kernel = model.get_layer("aux_logits/conv2_conv").kernel.shape
    # Szegedy et al. 2017, Fig. 3-8: 147x147x64, 73x73x160, 71x71x192, 35x35x384, 17x17x1024, 8x8x1536.
    assert shapes == {"conv2b": (147, 147, 64), "mixed3a": (73, 73, 160), "mixed4a": (71, 71, 192),
                      "mixed5a": (35, 35, 384), "mixed5e": (35, 35, 384), "mixed6a": (17, 17, 1024),
                      "mixed6h": (17, 17, 1024), "mixed7a": (8, 8, 1536), "mixed7d": (8, 8, 1536)}
    assert aux_kernel == (5, 5, 128, 768)
    row = registry.describe("inception_v4", num_classes=1000, input_size=75)
    assert row["params"] == pytest.approx(PUBLISHED_PARAMS["inception_v4"], rel=0.005)
    assert row["layers"] == 149 + 1  # convs of stem 11, A 4x7, red-A 4, B 7x10, red-B 6, C 3x10; FC


def test_inception_resnet_v2_main_path_is_the_keras_graph():
    ours = registry.build("inception_resnet_v2", num_classes=1000, input_size=75)
    keras = tf.keras.applications.InceptionResNetV2(weights=None, classes=1000, input_shape=(75, 75, 3),
                                                    classifier_activation=None)
    assert ours.count_params() == keras.count_params() == KERAS_INCEPTION_RESNET_V2_PARAMS
    assert KERAS_INCEPTION_RESNET_V2_PARAMS == pytest.approx(PUBLISHED_PARAMS["inception_resnet_v2"], rel=0.005)
    assert [w.shape for w in ours.weights] == [w.shape for w in keras.weights]
    keras.set_weights(perturbed(keras.get_weights()))
    ours.set_weights(keras.get_weights())
    assert_same_outputs(ours, keras, 75)


@pytest.mark.parametrize("name", ["inception_v4", "inception_resnet_v2"])
def test_new_inception_models_train_with_their_aux_head(name):
    spec = registry.get_spec(name)
    assert (spec.aux_loss_weight, spec.logits_scopes, spec.preprocessing) == (0.4, ("predictions", "aux_logits"), "tf")
    model = registry.build(name, input_size=75, aux_logits=True, dropout=0.2)
    logits, aux = model(random_images(75), training=True)
    assert logits.shape == aux.shape == (2, 10)
    assert np.isfinite(logits.numpy()).all() and np.isfinite(aux.numpy()).all()
    assert model.get_layer("dropout").rate == 0.2
    with pytest.raises(SemhpcError, match=f"image size 74 is too small for model {name} .minimum 75"):
        registry.build(name, input_size=74)


def test_unknown_model_names_the_closest():
    with pytest.raises(SemhpcError, match=r"unknown model 'densnet121' \(closest: densenet121"):
        registry.get_spec("densnet121")
    with pytest.raises(SemhpcError, match=r"unknown model 'resnet50' \(valid: densenet28, .*vgg11"):
        registry.build("resnet50")


def test_input_below_the_model_minimum_is_refused():
    with pytest.raises(SemhpcError, match="image size 64 is too small for model inception_v3 .minimum 75"):
        registry.build("inception_v3", input_size=64)


@pytest.mark.parametrize("name, keras_module", [("densenet121", tf.keras.applications.densenet),
                                                 ("inception_v3", tf.keras.applications.inception_v3)])
def test_preprocess_matches_keras_and_runs_inside_tf_data(name, keras_module):
    spec = registry.get_spec(name)
    images = random_images(8)
    expected = keras_module.preprocess_input(images * 255.0)
    np.testing.assert_allclose(registry.preprocess(images, spec), expected, atol=1e-5)

    dataset = tf.data.Dataset.from_tensor_slices(images).map(lambda image: registry.preprocess(image, spec))
    np.testing.assert_allclose(np.stack(list(dataset.as_numpy_iterator())), expected, atol=1e-5)


def test_models_command_json_and_table(monkeypatch, capsys):
    subset = ("densenet28", "alexnet")
    monkeypatch.setattr(registry, "MODELS", {name: registry.MODELS[name] for name in subset})

    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == list(subset)
    for row in rows:
        spec = registry.get_spec(row["name"])
        assert set(row) == {"name", "input_size", "params", "layers", "thesis_basis"}
        assert row["input_size"] == spec.default_input_size
        assert row["params"] == registry.count_params(row["name"])
        assert row["thesis_basis"] == registry.thesis_basis(row["name"])
    assert [row["layers"] for row in rows] == [28, 8]

    assert cli.main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:5] == ["name", "input", "params", "layers", "preprocessing"]
    for line, row in zip(table[1:], rows):
        assert line.split()[:5] == [row["name"], str(row["input_size"]), f"{row['params']:,}",
                                    str(row["layers"]), registry.get_spec(row["name"]).preprocessing]
