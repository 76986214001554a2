"""Synthetic SEM data: determinism, per-class distinctness, vendor files the reader parses like real
ones, archive imbalance, and one-line CLI errors.

Expectations come from the contract (file layout, vendor by index parity, ARCHIVE_COUNTS order),
from the reader's documented rules (FEI data bar cut at [Image] ResolutionY), or from the images
themselves (`synthesize` must round-trip through the file exactly).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from semhpc.cli import main as semhpc_main
from semhpc.data.categories import ARCHIVE_COUNTS, CATEGORIES
from semhpc.data.sem_metadata import FEI, ZEISS
from semhpc.data.sem_tiff import read_sem_tiff
from semhpc.data.sem_writer import write_sem_tiff
from semhpc.data.synth import class_counts, generate, image_path, synthesize

SIZE = (96, 72)  # (width, height) of the image area
PER_CLASS = 4
SEED = 5


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiffs"
    counts = generate(out, PER_CLASS, size=SIZE, seed=SEED, progress=False)
    return out, counts


def all_files(out):
    return sorted(path.relative_to(out) for path in out.rglob("*") if path.is_file())


def test_folder_per_category_with_numbered_files(tree):
    out, counts = tree
    assert counts == {category: PER_CLASS for category in CATEGORIES}
    expected = sorted(image_path(out, category, index).relative_to(out)
                      for category in CATEGORIES for index in range(PER_CLASS))
    assert all_files(out) == expected
    assert str(expected[0]) == f"{CATEGORIES[0]}/{CATEGORIES[0].lower()}_00000.tif"


def test_same_seed_gives_identical_bytes_and_another_seed_different_ones(tree, tmp_path):
    out, _ = tree
    generate(tmp_path / "again", PER_CLASS, size=SIZE, seed=SEED, progress=False)
    generate(tmp_path / "other", PER_CLASS, size=SIZE, seed=SEED + 1, progress=False)
    for relative in all_files(out):
        original = (out / relative).read_bytes()
        assert (tmp_path / "again" / relative).read_bytes() == original, relative
        assert (tmp_path / "other" / relative).read_bytes() != original, relative


def test_an_image_does_not_depend_on_what_else_is_generated(tree, tmp_path):
    """Seeded by (seed, category, index): generating fewer images, or an imbalanced set, or one
    image alone gives the same file, so images can be produced in any order or in parallel."""
    out, _ = tree
    generate(tmp_path / "one", 1, size=SIZE, seed=SEED, progress=False)
    generate(tmp_path / "imbalanced", PER_CLASS, size=SIZE, seed=SEED, imbalance=True, progress=False)
    for category in CATEGORIES:
        first = image_path(out, category, 0).read_bytes()
        assert image_path(tmp_path / "one", category, 0).read_bytes() == first
        assert image_path(tmp_path / "imbalanced", category, 0).read_bytes() == first
    alone = synthesize("Tips", PER_CLASS - 1, SIZE, SEED)
    assert np.array_equal(read_sem_tiff(image_path(out, "Tips", PER_CLASS - 1)).pixels, alone.pixels)


def test_rerun_with_fewer_images_leaves_only_the_new_set(tmp_path):
    generate(tmp_path, 3, size=(64, 48), seed=1, progress=False)
    (tmp_path / "Tips" / "notes.txt").write_text("mine")
    generate(tmp_path, 1, size=(64, 48), seed=1, progress=False)
    assert sorted(p.name for p in (tmp_path / "Tips").iterdir()) == ["notes.txt", "tips_00000.tif"]
    assert len(list(tmp_path.rglob("*.tif"))) == len(CATEGORIES)


def test_files_read_like_instrument_files(tree):
    """Vendor alternates by index; every normalised field is present without warnings; the pixels
    read back are exactly the image area drawn, so any FEI data bar below it is cut."""
    out, _ = tree
    width, height = SIZE
    for category in CATEGORIES:
        for index in range(PER_CLASS):
            image = read_sem_tiff(image_path(out, category, index))
            assert image.meta["vendor"] == (FEI, ZEISS)[index % 2]
            assert image.warnings == []
            assert all(image.meta[field] is not None for field in
                       ("model", "pixel_size_m", "magnification", "hv_volts", "working_distance_m",
                        "detector", "acquired_at"))
            assert (image.meta["width"], image.meta["height"]) == SIZE
            assert np.array_equal(image.pixels, synthesize(category, index, SIZE, SEED).pixels)
            if image.meta["vendor"] == ZEISS:
                assert image.meta["source_height"] is None


def test_fei_data_bar_is_below_the_declared_image_height(tree):
    out, _ = tree
    width, height = SIZE
    with_bar = [path for path in out.rglob("*.tif")
                if synthesize(path.parent.name, int(path.stem[-5:]), SIZE, SEED).data_bar is not None]
    assert with_bar, "no FEI image got a data bar"
    for path in with_bar:
        page = tifffile.imread(path)
        image = read_sem_tiff(path)
        assert page.shape[0] > height and image.meta["source_height"] == page.shape[0]
        assert np.array_equal(image.pixels, page[:height])


def test_magnification_and_pixel_size_agree(tree):
    """Magnification x field width is the vendor's fixed reference width for every image (to the
    3-4 significant digits the vendors print)."""
    out, _ = tree
    references = {FEI: [], ZEISS: []}
    for path in out.rglob("*.tif"):
        meta = read_sem_tiff(path).meta
        references[meta["vendor"]].append(meta["magnification"] * meta["pixel_size_m"] * meta["width"])
    for vendor, values in references.items():
        assert np.ptp(values) <= 1e-2 * np.mean(values), vendor


def test_zeiss_micrometre_pixel_size_survives_latin1(tmp_path):
    """A wide field (Powder, 64 pixels wide) has micrometre pixels: Zeiss writes "µm" as byte 0xB5."""
    image = synthesize("Powder", 1, (64, 48), SEED)
    assert image.acquisition.vendor == ZEISS and image.acquisition.pixel_size_m >= 1e-6
    write_sem_tiff(tmp_path / "wide.tif", image.pixels, image.acquisition)
    assert b"\xb5m" in (tmp_path / "wide.tif").read_bytes()
    read = read_sem_tiff(tmp_path / "wide.tif")
    assert read.warnings == []
    assert read.meta["pixel_size_m"] == pytest.approx(image.acquisition.pixel_size_m, rel=1e-3)


def test_pixel_size_follows_the_image_width():
    """A wider image of the same scene is the same field of view sampled finer."""
    for category in CATEGORIES:
        small = synthesize(category, 0, (128, 96), SEED).acquisition
        large = synthesize(category, 0, (256, 192), SEED).acquisition
        assert small.pixel_size_m == pytest.approx(2 * large.pixel_size_m, rel=1e-3)
        assert small.field_width_m == pytest.approx(large.field_width_m, rel=1e-3)


def structure_features(pixels):
    """Cheap texture statistics at the resolution the demo trains on (about 64 pixels wide): radial
    power spectrum bands, edge density, orientation coherence over the image and in 8x8 windows
    (lines vs blobs), how uneven local contrast is (one object vs a uniform texture), and the
    shape of the grey-level histogram."""
    image = pixels.astype(np.float32)
    image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
    image = image.reshape(image.shape[0] // 2, 2, image.shape[1] // 2, 2).mean((1, 3))
    image = (image - image.mean()) / (image.std() + 1e-6)
    power = np.abs(np.fft.fft2(image)) ** 2
    radius = np.hypot(np.fft.fftfreq(image.shape[0])[:, None], np.fft.fftfreq(image.shape[1])[None, :])
    bands = np.linspace(0.02, 0.5, 7)
    spectrum = [np.log(power[(radius >= low) & (radius < high)].mean()) for low, high in zip(bands, bands[1:])]
    grad_y, grad_x = np.gradient(image)
    energy = grad_x**2 + grad_y**2
    coherence = np.abs(np.mean(grad_x**2 - grad_y**2 + 2j * grad_x * grad_y)) / energy.mean()

    def windows(values):
        rows, cols = values.shape[0] // 8 * 8, values.shape[1] // 8 * 8
        return values[:rows, :cols].reshape(rows // 8, 8, cols // 8, 8).mean((1, 3))

    xx, yy, xy = windows(grad_x**2), windows(grad_y**2), windows(grad_x * grad_y)
    local_coherence = np.hypot(xx - yy, 2 * xy) / (xx + yy + 1e-6)
    local_variance = windows(image**2) - windows(image) ** 2
    return np.array(spectrum + list(np.percentile(image, [5, 25, 50, 75, 95])) + [
        np.sqrt(energy).mean(), coherence, local_coherence.mean(),
        np.log(local_variance.std() / (local_variance.mean() + 1e-6) + 1e-6),
        np.mean(image**3), np.mean(image > 1.5), np.mean(image < -1.5)])


def nearest_centroid_accuracy(features, labels):
    """Fit class centroids on even-indexed images, classify the odd ones (standardised features)."""
    features = (features - features.mean(0)) / (features.std(0) + 1e-9)
    fit = np.arange(len(labels)) % 2 == 0
    centroids = np.stack([features[fit & (labels == k)].mean(0) for k in range(len(CATEGORIES))])
    distances = ((features[~fit, None, :] - centroids[None]) ** 2).sum(-1)
    return np.mean(distances.argmin(1) == labels[~fit])


def test_categories_differ_in_structure_more_than_within(tmp_path):
    per_class = 12
    generate(tmp_path, per_class, size=(128, 96), seed=11, progress=False)
    pixels = [read_sem_tiff(image_path(tmp_path, category, index)).pixels
              for category in CATEGORIES for index in range(per_class)]
    labels = np.repeat(np.arange(len(CATEGORIES)), per_class)
    chance = 1 / len(CATEGORIES)
    structure = nearest_centroid_accuracy(np.stack([structure_features(p) for p in pixels]), labels)
    brightness = nearest_centroid_accuracy(np.array([[p.mean(), p.std()] for p in pixels]), labels)
    assert structure >= 3 * chance
    assert brightness < structure  # the class is in the morphology, not in the grey level


def test_imbalance_follows_the_archive_proportions():
    counts = class_counts(40, imbalance=True)
    largest = max(ARCHIVE_COUNTS, key=ARCHIVE_COUNTS.get)
    assert counts[largest] == 40 and min(counts.values()) >= 1
    for a in CATEGORIES:
        for b in CATEGORIES:
            if ARCHIVE_COUNTS[a] > ARCHIVE_COUNTS[b]:
                assert counts[a] >= counts[b], (a, b)
    assert counts[largest] / counts["Fibres"] > 5  # the archive's 153 vs 4178 stays a strong imbalance
    assert class_counts(1, imbalance=True) == dict.fromkeys(CATEGORIES, 1)
    assert class_counts(7) == dict.fromkeys(CATEGORIES, 7)


def test_imbalanced_tree_on_disk(tmp_path):
    counts = generate(tmp_path, 10, size=(64, 48), seed=0, imbalance=True, progress=False)
    assert counts == class_counts(10, imbalance=True)
    assert {category: len(list((tmp_path / category).glob("*.tif"))) for category in CATEGORIES} == counts


def test_cli_matches_the_library_in_a_fresh_process(tmp_path):
    """Run as users do; a new interpreter (own hash seed) must write the same bytes as generate()."""
    cli_out, lib_out = tmp_path / "cli", tmp_path / "lib"
    result = subprocess.run([sys.executable, "-m", "semhpc", "synth", str(cli_out), "--per-class", "2",
                             "--size", "64x48", "--seed", "9"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONHASHSEED": "123"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {2 * len(CATEGORIES)} SEM TIFFs (64x48) to {cli_out}")
    generate(lib_out, 2, size=(64, 48), seed=9, progress=False)
    assert all_files(cli_out) == all_files(lib_out)
    for relative in all_files(lib_out):
        assert (cli_out / relative).read_bytes() == (lib_out / relative).read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--per-class", "0"], "argument --per-class: 0 is out of range: must be between 1 and 100000"),
    (["--per-class", "1", "--size", "64by48"], "argument --size: '64by48': expected WIDTHxHEIGHT"),
    (["--per-class", "1", "--size", "8x48"], "argument --size: '8x48': each side must be between 16 and 4096"),
    (["--per-class", "1", "--seed", "-1"], "argument --seed: -1 is out of range: must be between 0 and 2147483647"),
])
def test_cli_bad_arguments_give_one_error_line(tmp_path, capsys, args, message):
    assert semhpc_main(["synth", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("semhpc synth: error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_output_path_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    assert semhpc_main(["synth", str(target), "--per-class", "1", "--size", "64x48"]) == 2
    err = capsys.readouterr().err
    assert err == f"semhpc synth: error: {target}: output folder exists and is not a folder\n"
    assert target.read_text() == "not a folder"
