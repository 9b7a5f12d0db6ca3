"""Tests of melkit.core.metrics and melkit.core.threshold_policy against hand-computed values (sklearn only as a
cross-check)."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from melkit.core.metrics import (
    _weighted_auc,
    binary_report,
    bootstrap_auc_ci,
    brier_score,
    confusion_at,
    expected_calibration_error,
    reliability_curve,
    roc_auc,
    sensitivity_at_specificity,
    specificity_at_sensitivity,
)
from melkit.core.threshold_policy import choose_threshold, parse_threshold_policy
from melkit.util.errors import BadInputError

# A small data set used by several tests: 4 nevi, 3 melanomas.
#   index:  0    1    2    3    4    5    6
#   y    :  0    0    0    0    1    1    1
#   p    : 0.1  0.2  0.3  0.6  0.5  0.7  0.8
# ROC points, deciding melanoma when p >= t (tp of 3, fp of 4):
#   t=0.8: tp1 fp0 -> sens 1/3 spec 1    J = 1/3
#   t=0.7: tp2 fp0 -> sens 2/3 spec 1    J = 2/3
#   t=0.6: tp2 fp1 -> sens 2/3 spec 3/4  J = 5/12
#   t=0.5: tp3 fp1 -> sens 1   spec 3/4  J = 3/4   <- unique Youden maximum
#   t=0.3: tp3 fp2 -> sens 1   spec 1/2  J = 1/2
#   t=0.2: tp3 fp3 -> sens 1   spec 1/4  J = 1/4
#   t=0.1: tp3 fp4 -> sens 1   spec 0    J = 0
Y7 = [0, 0, 0, 0, 1, 1, 1]
P7 = [0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.8]


def _random_data(n=200, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, size=n), 0, 1)
    return y, p


# --------------------------------------------------------------------------- AUC


def test_auc_with_ties_hand_computed():
    # pos 0.4 vs neg 0.1: 1, pos 0.4 vs neg 0.4: tie 1/2, pos 0.8 vs 0.1: 1, pos 0.8 vs 0.4: 1 -> 3.5/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]) == pytest.approx(0.875)


def test_auc_on_the_small_example():
    # Only the pair (pos 0.5, neg 0.6) is misordered: 11 of 12 pairs correct.
    assert roc_auc(Y7, np.array(P7)) == pytest.approx(11 / 12)


def test_auc_undefined_on_one_class():
    assert roc_auc([1, 1, 1], [0.2, 0.5, 0.9]) is None
    assert roc_auc([0], [0.3]) is None


# --------------------------------------------------------------------------- bootstrap


def test_weighted_auc_matches_sklearn_on_explicit_resamples():
    y, p = _random_data(60)
    p = np.round(p, 1)  # many ties
    rng = np.random.default_rng(5)
    idx = rng.integers(0, len(y), size=(20, len(y)))
    counts = np.stack([np.bincount(row, minlength=len(y)) for row in idx]).astype(float)
    got = _weighted_auc(y, p, counts)
    for row, value in zip(idx, got):
        assert value == pytest.approx(roc_auc_score(y[row], p[row]), abs=1e-12)


def test_weighted_auc_one_class_row_is_nan():
    y = np.array([0, 1])
    p = np.array([0.2, 0.7])
    out = _weighted_auc(y, p, np.array([[2.0, 0.0], [1.0, 1.0]]))
    assert np.isnan(out[0]) and out[1] == 1.0


def test_bootstrap_reproducible_and_seed_dependent():
    y, p = _random_data()
    a = bootstrap_auc_ci(y, p, n_boot=300, seed=7)
    b = bootstrap_auc_ci(y, p, n_boot=300, seed=7)
    c = bootstrap_auc_ci(y, p, n_boot=300, seed=8)
    assert a == b
    assert a != c
    auc = roc_auc(y, p)
    assert a[0] <= auc <= a[1]
    assert all(isinstance(v, float) for v in a)


def test_bootstrap_perfect_separation_is_degenerate():
    # Every resample with both classes is still perfectly separated -> AUC 1 in all of them.
    assert bootstrap_auc_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], n_boot=200) == (1.0, 1.0)


def test_bootstrap_undefined_on_one_class():
    assert bootstrap_auc_ci([0, 0, 0], [0.1, 0.5, 0.9]) is None


def test_group_bootstrap_ignores_duplicated_images():
    # 12 lesions with one image each; then the same data with every image copied 3 times.
    y, p = _random_data(12, seed=3)
    y[:2] = [0, 1]  # make sure both classes are there
    y_dup, p_dup = np.repeat(y, 3), np.repeat(p, 3)
    # Names sort in the original order, so lesion j is unit j in both bootstraps.
    groups = np.repeat([f"lesion{j:02d}" for j in range(12)], 3)

    per_image = bootstrap_auc_ci(y, p, n_boot=500, seed=11)
    per_lesion_dup = bootstrap_auc_ci(y_dup, p_dup, groups=groups, n_boot=500, seed=11)
    per_image_dup = bootstrap_auc_ci(y_dup, p_dup, n_boot=500, seed=11)

    # Drawing lesions draws all 3 copies together: every weight is tripled, the AUC of every
    # resample is unchanged, and the same seed gives the same draws -> the very same interval.
    assert per_lesion_dup == pytest.approx(per_image, abs=1e-12)
    # Resampling the copies one by one pretends there are 36 independent images: narrower CI.
    assert per_image_dup[1] - per_image_dup[0] < per_lesion_dup[1] - per_lesion_dup[0]

    auc = roc_auc(y_dup, p_dup)
    assert per_lesion_dup[0] <= auc <= per_lesion_dup[1]
    assert bootstrap_auc_ci(y_dup, p_dup, groups=groups, n_boot=500, seed=11) == per_lesion_dup
    assert bootstrap_auc_ci(y_dup, p_dup, groups=list(groups), n_boot=500, seed=12) != per_lesion_dup


def test_bootstrap_skips_one_class_resamples():
    # Two lesions, one per class: half of the group resamples hold one class and must be skipped;
    # the others draw both lesions (AUC 1) -> interval (1, 1), no NaN.
    y = [0, 0, 1, 1]
    p = [0.1, 0.2, 0.7, 0.9]
    assert bootstrap_auc_ci(y, p, groups=["a", "a", "b", "b"], n_boot=100) == (1.0, 1.0)


def test_bootstrap_bad_arguments():
    with pytest.raises(BadInputError):
        bootstrap_auc_ci(Y7, P7, groups=["a"] * 3)
    with pytest.raises(BadInputError):
        bootstrap_auc_ci(Y7, P7, n_boot=0)
    with pytest.raises(BadInputError):
        bootstrap_auc_ci(Y7, P7, level=1.0)


# --------------------------------------------------------------------------- threshold policies


@pytest.mark.parametrize(
    "text, expected",
    [
        ("youden", ("youden", None)),
        (" Youden ", ("youden", None)),
        ("sensitivity:0.90", ("sensitivity", 0.9)),
        ("sensitivity-every-source:0.9", ("sensitivity-every-source", 0.9)),
        ("specificity:0.95", ("specificity", 0.95)),
        ("fixed:0.5", ("fixed", 0.5)),
    ],
)
def test_parse_threshold_policy_accepts(text, expected):
    assert parse_threshold_policy(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "youden:0.5", "sensitivity", "sensitivity:", "sensitivity:abc", "sensitivity:1.0",
     "specificity:0", "fixed:1.5", "fixed:-0.1", "fixed:nan", "recall:0.9", None, 0.5],
)
def test_parse_threshold_policy_rejects(text):
    with pytest.raises(BadInputError) as err:
        parse_threshold_policy(text)
    # The message lists the accepted forms.
    for form in ("youden", "sensitivity:X", "specificity:X", "fixed:X"):
        assert form in str(err.value)


def test_youden_threshold_hand_computed():
    # See the table above Y7: J is maximal (3/4) at t = 0.5.
    assert choose_threshold(Y7, P7, "youden") == 0.5
    assert choose_threshold(Y7, P7) == 0.5


def test_youden_tie_takes_highest_threshold():
    # y=[0,0,1,1], p=[0.1,0.4,0.35,0.8]: J(0.8) = 1/2+1-1 = 1/2, J(0.35) = 1+1/2-1 = 1/2 -> 0.8.
    assert choose_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], "youden") == 0.8


def test_sensitivity_and_specificity_policies_hand_computed():
    # sensitivity >= 0.6: first reached at t=0.7 (2/3) -> highest such threshold is 0.7.
    assert choose_threshold(Y7, P7, "sensitivity:0.6") == 0.7
    # sensitivity >= 0.9: only 1.0 qualifies, first at t=0.5.
    assert choose_threshold(Y7, P7, "sensitivity:0.9") == 0.5
    # specificity >= 0.7: t=0.5 has 3/4, t=0.3 has 1/2 -> lowest is 0.5.
    assert choose_threshold(Y7, P7, "specificity:0.7") == 0.5
    # specificity >= 0.8: t=0.7 has 1, t=0.6 has 3/4 -> lowest is 0.7.
    assert choose_threshold(Y7, P7, "specificity:0.8") == 0.7
    assert choose_threshold(Y7, P7, "fixed:0.42") == 0.42


def test_sensitivity_policy_reaches_target_on_random_data():
    y, p = _random_data(500)
    t = choose_threshold(y, p, "sensitivity:0.9")
    c = confusion_at(y, p, t)
    assert c["tp"] / (c["tp"] + c["fn"]) >= 0.9
    # ... and it is the highest such threshold: the next higher score drops below 0.9.
    higher = np.min(p[p > t])
    c2 = confusion_at(y, p, higher)
    assert c2["tp"] / (c2["tp"] + c2["fn"]) < 0.9


def test_specificity_policy_reaches_target_on_random_data():
    y, p = _random_data(500)
    t = choose_threshold(y, p, "specificity:0.9")
    c = confusion_at(y, p, t)
    assert c["tn"] / (c["tn"] + c["fp"]) >= 0.9
    lower = np.max(p[p < t])
    c2 = confusion_at(y, p, lower)
    assert c2["tn"] / (c2["tn"] + c2["fp"]) < 0.9


def test_every_source_sensitivity_policy_meets_the_target_on_each_source():
    """Two sources whose melanomas score differently: the pooled sensitivity:0.9 threshold misses many of
    the low-scoring source's melanomas, the every-source one reaches 0.9 on each, and is the highest that does."""
    rng = np.random.default_rng(3)
    y = np.r_[rng.random(400) < 0.4, rng.random(600) < 0.14].astype(int)
    groups = np.array(["bcn"] * 400 + ["ham"] * 600)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.12) - 0.2 * (groups == "ham") * y, 0, 1)  # ham's melanomas lower
    pooled = choose_threshold(y, p, "sensitivity:0.9")
    every = choose_threshold(y, p, "sensitivity-every-source:0.9", groups=groups)

    def sens(t, g):
        c = confusion_at(y[groups == g], p[groups == g], t)
        return c["tp"] / (c["tp"] + c["fn"])

    assert sens(pooled, "ham") < 0.85 and every < pooled
    assert min(sens(every, "bcn"), sens(every, "ham")) >= 0.9
    assert min(sens(np.min(p[p > every]), g) for g in ("bcn", "ham")) < 0.9  # the highest such threshold
    # one group, or none given: the pooled policy
    assert choose_threshold(y, p, "sensitivity-every-source:0.9") == pooled
    assert choose_threshold(y, p, "sensitivity-every-source:0.9", groups=["x"] * len(y)) == pooled
    assert choose_threshold(Y7, P7, "sensitivity-every-source:0.6") == choose_threshold(Y7, P7, "sensitivity:0.6")
    with pytest.raises(BadInputError, match="groups has 3 entries"):
        choose_threshold(y, p, "sensitivity-every-source:0.9", groups=["a", "b", "c"])


def test_threshold_is_clipped_to_unit_interval():
    # Highest score is a nevus and there are only 2 nevi: specificity >= 0.9 needs zero false
    # positives, i.e. sklearn's "nobody positive" threshold (inf) -> clipped to 1.0.
    t = choose_threshold([1, 0, 0], [0.5, 0.2, 0.9], "specificity:0.9")
    assert t == 1.0 and isinstance(t, float)


def test_threshold_needs_two_classes_except_fixed():
    with pytest.raises(BadInputError):
        choose_threshold([1, 1], [0.2, 0.9], "youden")
    with pytest.raises(BadInputError):
        choose_threshold([0, 0], [0.2, 0.9], "sensitivity:0.9")
    assert choose_threshold([0, 0], [0.2, 0.9], "fixed:0.3") == 0.3


# --------------------------------------------------------------------------- operating points


def test_confusion_at_hand_computed():
    # p >= 0.5 calls indices 3 (nevus), 4, 5, 6 (melanomas) positive.
    assert confusion_at(Y7, P7, 0.5) == {"tp": 3, "fp": 1, "tn": 3, "fn": 0}
    # p >= 0.75 calls only index 6.
    assert confusion_at(Y7, P7, 0.75) == {"tp": 1, "fp": 0, "tn": 4, "fn": 2}
    c = confusion_at(Y7, P7, 0.5)
    assert all(type(v) is int for v in c.values())


def test_sensitivity_at_specificity_hand_computed():
    # Points with spec >= 0.9: t=inf (0), t=0.8 (1/3), t=0.7 (2/3) -> best sensitivity 2/3.
    assert sensitivity_at_specificity(Y7, P7, 0.9) == pytest.approx(2 / 3)
    # spec >= 0.75 also admits t=0.5 with sensitivity 1 (exact ratio 3/4 must count).
    assert sensitivity_at_specificity(Y7, P7, 0.75) == 1.0
    assert sensitivity_at_specificity([0, 0], [0.1, 0.2]) is None


def test_specificity_at_sensitivity_hand_computed():
    # Points with sens >= 0.9: t=0.5 (3/4), 0.3 (1/2), 0.2 (1/4), 0.1 (0) -> best specificity 3/4.
    assert specificity_at_sensitivity(Y7, P7, 0.9) == pytest.approx(0.75)
    # sens >= 0.6 admits t=0.7 with specificity 1.
    assert specificity_at_sensitivity(Y7, P7, 0.6) == 1.0
    assert specificity_at_sensitivity([1, 1], [0.1, 0.2]) is None


# --------------------------------------------------------------------------- calibration


def test_ece_hand_computed():
    # Bin [0.1,0.2): p 0.1,0.1, y 0,1 -> |0.1-0.5| = 0.4, weight 1/2
    # Bin [0.9,1.0]: p 0.9,0.9, y 1,1 -> |0.9-1.0| = 0.1, weight 1/2   => ECE = 0.2 + 0.05 = 0.25
    assert expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], n_bins=10) == pytest.approx(0.25)


def test_ece_p_equal_one_goes_in_last_bin():
    # p=1.0 and p=0.95 share the last bin [0.9,1.0]: mean p 0.975, frac pos 0.5 -> ECE 0.475.
    assert expected_calibration_error([0, 1], [1.0, 0.95]) == pytest.approx(0.475)
    assert expected_calibration_error([1], [1.0]) == 0.0


def test_ece_with_two_bins():
    # 2 bins: [0,0.5): p 0.2,0.4 y 0,0 -> |0.3-0| = 0.3 ; [0.5,1]: p 0.5,0.9 y 1,0 -> |0.7-0.5| = 0.2
    # ECE = 0.5*0.3 + 0.5*0.2 = 0.25
    assert expected_calibration_error([0, 0, 1, 0], [0.2, 0.4, 0.5, 0.9], n_bins=2) == pytest.approx(0.25)


def test_reliability_curve_hand_computed():
    rows = reliability_curve([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], n_bins=10)
    assert rows == [
        {"lo": pytest.approx(0.1), "hi": pytest.approx(0.2), "n": 2, "mean_p": pytest.approx(0.1), "frac_pos": 0.5},
        {"lo": pytest.approx(0.9), "hi": pytest.approx(1.0), "n": 2, "mean_p": pytest.approx(0.9), "frac_pos": 1.0},
    ]
    json.dumps(rows)
    assert all(type(v) in (int, float) for r in rows for v in r.values())


def test_brier_hand_computed():
    # ((0.2-0)^2 + (0.6-1)^2) / 2 = (0.04 + 0.16) / 2 = 0.1
    assert brier_score([0, 1], [0.2, 0.6]) == pytest.approx(0.1)
    assert brier_score([0, 1], [0.0, 1.0]) == 0.0


# --------------------------------------------------------------------------- report


def test_binary_report_hand_computed():
    r = binary_report(Y7, np.array(P7), threshold=0.5, n_boot=200)
    assert (r["n"], r["n_pos"], r["n_neg"]) == (7, 3, 4)
    assert r["confusion"] == {"tp": 3, "fp": 1, "tn": 3, "fn": 0}
    assert r["sensitivity"] == 1.0  # 3/3
    assert r["specificity"] == 0.75  # 3/4
    assert r["balanced_accuracy"] == pytest.approx(0.875)  # (1 + 3/4) / 2
    assert r["accuracy_at_threshold"] == pytest.approx(6 / 7)
    assert r["accuracy_at_0_5"] == pytest.approx(6 / 7)
    assert r["majority_label"] == 0 and r["majority_baseline"] == pytest.approx(4 / 7)
    assert r["auc"] == pytest.approx(11 / 12)
    lo, hi = r["auc_ci"]
    assert lo <= r["auc"] <= hi
    assert r["sensitivity_at_90_specificity"] == pytest.approx(2 / 3)
    assert r["specificity_at_90_sensitivity"] == pytest.approx(0.75)
    # Brier: (0.01+0.04+0.09+0.36+0.25+0.09+0.04)/7 = 0.88/7
    assert r["brier"] == pytest.approx(0.88 / 7)
    # ECE (10 bins, every p in its own bin): (0.1+0.2+0.3+0.6+0.5+0.3+0.2)/7 = 2.2/7
    assert r["ece"] == pytest.approx(2.2 / 7)
    assert r["threshold"] == 0.5


def test_binary_report_majority_positive():
    r = binary_report([1, 1, 0], [0.9, 0.4, 0.3], threshold=0.5, n_boot=50)
    assert r["majority_label"] == 1
    assert r["majority_baseline"] == pytest.approx(2 / 3)


def test_binary_report_one_class_does_not_crash():
    r = binary_report([0, 0, 0], [0.1, 0.6, 0.2], threshold=0.5)
    assert r["auc"] is None and r["auc_ci"] is None
    assert r["sensitivity"] is None
    assert r["specificity"] == pytest.approx(2 / 3)
    assert r["balanced_accuracy"] == pytest.approx(2 / 3)  # only specificity is defined
    assert r["sensitivity_at_90_specificity"] is None
    assert r["specificity_at_90_sensitivity"] is None
    assert r["majority_label"] == 0 and r["majority_baseline"] == 1.0
    json.dumps(r)


def _assert_plain(obj):
    """Only plain Python types, recursively (no numpy scalars sneaking through)."""
    if isinstance(obj, dict):
        for v in obj.values():
            _assert_plain(v)
    elif isinstance(obj, list):
        for v in obj:
            _assert_plain(v)
    else:
        assert obj is None or type(obj) in (int, float), f"{obj!r} is {type(obj)}"


def test_binary_report_is_json_serializable_with_groups():
    y, p = _random_data(100)
    groups = np.array([f"L{i // 3}" for i in range(100)])
    r = binary_report(y, p, threshold=np.float64(0.4), groups=groups, n_boot=200, seed=3)
    text = json.dumps(r)
    assert json.loads(text) == r
    _assert_plain(r)
    expected_keys = {
        "n", "n_pos", "n_neg", "auc", "auc_ci", "threshold", "sensitivity", "specificity",
        "balanced_accuracy", "accuracy_at_threshold", "accuracy_at_0_5", "majority_baseline",
        "majority_label", "sensitivity_at_90_specificity", "specificity_at_90_sensitivity",
        "ece", "brier", "confusion",
    }
    assert set(r) == expected_keys
    assert r["auc_ci"] == list(bootstrap_auc_ci(y, p, groups=groups, n_boot=200, seed=3))


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "y, p",
    [
        ([0, 1], [0.5]),  # length mismatch
        ([], []),  # empty
        ([0, 2], [0.1, 0.2]),  # label not in {0,1}
        ([0, 0.5], [0.1, 0.2]),  # fractional label
        (["a", "b"], [0.1, 0.2]),  # non-numeric labels
        ([0, 1], [0.1, 1.2]),  # p above 1
        ([0, 1], [-0.1, 0.5]),  # p below 0
        ([0, 1], [0.1, float("nan")]),  # NaN
        ([0, 1], [0.1, float("inf")]),  # inf
        ([0, 1], ["x", 0.2]),  # non-numeric p
        ([[0, 1]], [[0.1, 0.2]]),  # 2-D
    ],
)
def test_bad_inputs_raise(y, p):
    for fn in (roc_auc, brier_score, expected_calibration_error, reliability_curve):
        with pytest.raises(BadInputError):
            fn(y, p)
    with pytest.raises(BadInputError):
        binary_report(y, p, threshold=0.5)
    with pytest.raises(BadInputError):
        confusion_at(y, p, 0.5)
    with pytest.raises(BadInputError):
        choose_threshold(y, p, "youden")


def test_bad_parameters_raise():
    with pytest.raises(BadInputError):
        confusion_at(Y7, P7, float("nan"))
    with pytest.raises(BadInputError):
        expected_calibration_error(Y7, P7, n_bins=0)
    with pytest.raises(BadInputError):
        sensitivity_at_specificity(Y7, P7, target=1.5)
    with pytest.raises(BadInputError):
        binary_report(Y7, P7, threshold=0.5, groups=["a", "b"])


def test_accepts_bools_and_arrays():
    assert roc_auc(np.array([False, True]), np.array([0.2, 0.8], dtype=np.float32)) == 1.0
    assert roc_auc([0.0, 1.0], [0.2, 0.8]) == 1.0
