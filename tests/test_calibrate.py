"""Calibration of the confidence policy (docs/background.md: Classification policy): score histograms by outcome, P(top correct)
vs score and its 0.5 crossing, suggested thresholds, the PNG, and `semhpc calibrate` end to end."""

import functools
import json

import numpy as np
import pytest

from cli_runs import semhpc_ok, synth_and_ingest
from semhpc.classify.bundle import export_bundle
from semhpc.classify.calibration import SCORE_BINS, analyse, lowest_threshold, plot
from semhpc.classify.policy import Thresholds
from test_classify import make_run_dir

CLASSES = 10


def scores_for(top_scores, outcomes, seed=0):
    """Probabilities [N, 10] and labels [N]: image i has top-1 score top_scores[i], and its label is
    the top-1 class ("top"), the top-2 class ("second") or another one ("neither").
    Scores must be >= 0.11 so that the rest can be spread below them."""
    assert min(top_scores) >= 0.11
    rng = np.random.default_rng(seed)
    probabilities, labels = [], []
    for score, outcome in zip(top_scores, outcomes):
        order = rng.permutation(CLASSES)
        row = np.empty(CLASSES)
        second = min((1 - score) * 0.6, score * 0.9)
        row[order[0]], row[order[1]] = score, second
        row[order[2:]] = (1 - score - second) / (CLASSES - 2)
        probabilities.append(row)
        labels.append(order[{"top": 0, "second": 1, "neither": 2}[outcome]])
    return np.array(probabilities), np.array(labels)


def bin_centre(index):
    return (index + 0.5) / SCORE_BINS


def test_histogram_counts_each_outcome_in_its_score_bin():
    layout = {3: ["neither", "neither", "second"], 9: ["top", "second"], 19: ["top"] * 4}
    scores = [bin_centre(b) for b, outcomes in layout.items() for _ in outcomes]
    outcomes = [o for outcomes in layout.values() for o in outcomes]
    report = analyse(*scores_for(scores, outcomes), Thresholds())
    histogram = report["histogram"]
    assert len(histogram["bin_edges"]) == SCORE_BINS + 1
    for name, key in (("top_correct", "top"), ("second_correct", "second"), ("neither", "neither")):
        expected = [layout.get(b, []).count(key) for b in range(SCORE_BINS)]
        assert histogram[name] == expected, name
    assert report["images"] == 9
    assert report["top1_accuracy"] == pytest.approx(5 / 9)
    assert report["top2_accuracy"] == pytest.approx(7 / 9)
    assert report["second_correct_when_top_wrong"] == pytest.approx(2 / 4)
    assert report["p_top_correct"]["probability"][9] == pytest.approx(0.5)
    assert report["p_top_correct"]["probability"][0] is None  # no image in that bin


def test_a_score_of_exactly_one_falls_in_the_last_bin():
    report = analyse(*scores_for([1.0, 0.12], ["top", "neither"]), Thresholds())
    assert report["histogram"]["top_correct"][-1] == 1
    assert report["histogram"]["neither"][2] == 1  # 0.12 is in [0.10, 0.15)


def test_crossing_is_where_p_top_correct_passes_one_half():
    # Bins 6 (centre 0.325) and 7 (0.375): 1 of 4 and 3 of 4 right; all wrong below, all right above.
    scores, outcomes = [], []
    for b in range(2, 18):
        right = {6: 1, 7: 3}.get(b, 0 if b < 6 else 4)
        scores += [bin_centre(b)] * 4
        outcomes += ["top"] * right + ["neither"] * (4 - right)
    report = analyse(*scores_for(scores, outcomes), Thresholds())
    assert report["crossings"]["top1"]["score"] == pytest.approx(0.35)
    low, high = report["crossings"]["top1"]["ci95"]
    assert low <= 0.35 <= high


def test_top_two_crossing_proposes_the_suggest_threshold():
    # Top-1 right in bins >= 10 only; the top two are right from bin 7 (centre 0.375) up, and in
    # 1 of 4 images of bin 6 (0.325): the top-two curve crosses 0.5 between 0.325 and 0.375.
    scores, outcomes = [], []
    for b in range(2, 20):
        per_bin = (["neither"] * 4 if b < 6 else ["second", "neither", "neither", "neither"] if b == 6
                   else ["second"] * 4 if b < 10 else ["top"] * 4)
        scores += [bin_centre(b)] * 4
        outcomes += per_bin
    report = analyse(*scores_for(scores, outcomes), Thresholds(), target_precision=0.95)
    top2 = report["p_top2_correct"]["probability"]
    assert top2[6] == pytest.approx(0.25) and top2[7] == top2[19] == 1.0
    assert report["crossings"]["top2"]["score"] == pytest.approx(0.325 + (0.5 - 0.25) / 0.75 * 0.05)
    assert report["crossings"]["top1"]["score"] == pytest.approx((0.475 + 0.525) / 2)
    by_crossing = report["crossing_thresholds"]
    assert by_crossing == {"auto": pytest.approx(bin_centre(10)),
                           "suggest": report["crossings"]["top2"]["score"]}
    assert report["policy"]["crossing"]["share"]["suggest"] == pytest.approx(12 / 72)  # bins 7-9


def test_no_crossing_when_the_top_label_is_always_right():
    report = analyse(*scores_for([0.2, 0.5, 0.95], ["top"] * 3), Thresholds())
    assert report["crossings"]["top1"] == {"score": None, "ci95": None, "resamples_crossing": 0.0}
    assert report["crossing_thresholds"]["suggest"] is None and report["policy"]["crossing"] is None


def test_wilson_interval_of_a_bin():
    report = analyse(*scores_for([0.525] * 10, ["neither"] * 10), Thresholds())
    curve = report["p_top_correct"]
    # 0 of 10: the textbook 95% Wilson interval is [0, 0.2775]
    assert (curve["probability"][10], curve["ci95_low"][10]) == (0.0, 0.0)
    assert curve["ci95_high"][10] == pytest.approx(0.2775, abs=1e-4)
    assert curve["ci95_low"][0] is None


def calibrated_model(images: int, seed: int):
    """Uniform top scores s; top-1 right with probability s, top two right with min(1, s + 0.15):
    the curves cross 0.5 at 0.5 and 0.35, the thesis' numbers."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.12, 1.0, images)
    draw = rng.random(images)
    outcomes = np.where(draw < scores, "top", np.where(draw < np.minimum(1, scores + 0.15), "second", "neither"))
    return scores_for(scores, outcomes, seed)


def test_crossings_recover_the_true_ones_within_their_intervals_which_shrink_with_data():
    small = analyse(*calibrated_model(500, 1), Thresholds())["crossings"]
    large = analyse(*calibrated_model(8000, 2), Thresholds())["crossings"]
    for name, truth in (("top1", 0.5), ("top2", 0.35)):
        low, high = large[name]["ci95"]
        assert low <= truth <= high, (name, large[name])
        assert large[name]["score"] == pytest.approx(truth, abs=0.05)
        assert high - low < np.diff(small[name]["ci95"])[0], name
        assert large[name]["resamples_crossing"] == 1.0


def brute_force_lowest_threshold(scores, hits, target):
    meeting = [t for t in np.unique(scores) if hits[scores >= t].mean() >= target]
    return min(meeting) if meeting else None


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("target", [0.6, 0.8, 0.95])
def test_lowest_threshold_matches_brute_force(seed, target):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(200), 2)  # rounding makes ties
    hits = rng.random(200) < scores  # higher scores are right more often
    assert lowest_threshold(scores, hits, target) == brute_force_lowest_threshold(scores, hits, target)


def test_suggested_thresholds_meet_their_targets_on_the_data():
    rng = np.random.default_rng(7)
    scores = rng.uniform(0.15, 1.0, 400)
    outcomes = [rng.choice(["top", "second", "neither"], p=[s, (1 - s) * 0.7, (1 - s) * 0.3]) for s in scores]
    probabilities, labels = scores_for(scores, outcomes)
    report = analyse(probabilities, labels, Thresholds(), target_precision=0.9, suggest_precision=0.7)
    suggested = report["suggested_thresholds"]
    top = np.array(outcomes) == "top"
    top2 = top | (np.array(outcomes) == "second")
    assert suggested["auto"] == pytest.approx(brute_force_lowest_threshold(scores, top, 0.9))
    below = scores < suggested["auto"]
    assert suggested["suggest"] == pytest.approx(brute_force_lowest_threshold(scores[below], top2[below], 0.7))
    policy = report["policy"]["suggested"]
    assert policy["auto_precision"] >= 0.9 and policy["suggest_top2_rate"] >= 0.7
    assert sum(policy["share"].values()) == pytest.approx(1.0)
    current = report["policy"]["current"]
    assert current["share"]["auto"] == pytest.approx(np.mean(scores >= 0.9))
    assert current["auto_precision"] == pytest.approx(top[scores >= 0.9].mean())


def test_unreachable_precision_gives_no_auto_threshold():
    report = analyse(*scores_for([0.95, 0.9, 0.5], ["neither", "second", "top"]), Thresholds(),
                     target_precision=0.99)
    assert report["suggested_thresholds"]["auto"] is None
    assert report["policy"]["suggested"] is None


def test_plot_writes_a_png(tmp_path):
    rng = np.random.default_rng(1)
    scores = rng.uniform(0.15, 1.0, 100)
    outcomes = ["top" if rng.random() < s else "neither" for s in scores]
    report = analyse(*scores_for(scores, outcomes), Thresholds(), target_precision=0.8)
    plot(report, tmp_path / "calibration.png", "test")
    assert (tmp_path / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_calibrate_command_on_an_ingested_split(tmp_path):
    semhpc = functools.partial(semhpc_ok, timeout=1200)
    synth_and_ingest(tmp_path, shards_per_split=1)
    bundle = export_bundle(make_run_dir(tmp_path / "run"), tmp_path / "bundle")
    stdout = semhpc("calibrate", "--model", str(bundle.path), "--data", str(tmp_path / "data"), "--split", "test",
                    "--target-precision", "0.5")
    report = json.loads((bundle.path / "calibration" / "calibration-test.json").read_text())
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert report["images"] == sum(manifest["counts"]["test"].values())
    assert sum(sum(report["histogram"][name]) for name in ("top_correct", "second_correct", "neither")) \
        == report["images"]
    assert report["model_version"] == bundle.model_version and report["split"] == "test"
    assert (bundle.path / "calibration" / "calibration-test.png").stat().st_size > 0
    assert f"{report['images']} images" in stdout
    assert "P(top-1 or top-2 correct)" in stdout
