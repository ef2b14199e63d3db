"""The maths of task=probe (vlmsafety/refusal_direction.py) on hand-computed values."""

import math

import numpy as np
import pytest

from vlmsafety import refusal_direction as rd


def test_direction_is_the_difference_of_means_and_projection_uses_its_unit_vector():
    # two LM layers, D = 2. Layer 0: harmful mean (2, 0), benign mean (0, 2) -> direction (2, -2);
    # layer 1: harmful (1, 1) twice, benign (1, 1) twice -> direction 0 (no scale)
    harmful = np.array([[[1, 0], [1, 1]], [[3, 0], [1, 1]]], float)  # [n=2, L=2, D=2]
    benign = np.array([[[0, 1], [1, 1]], [[0, 3], [1, 1]]], float)
    direction = rd.difference_of_means(harmful, benign)
    assert direction.tolist() == [[2, -2], [0, 0]]
    assert np.allclose(rd.unit(direction), [[1 / math.sqrt(2), -1 / math.sqrt(2)], [0, 0]])
    proj = rd.project(np.concatenate([harmful, benign]), direction)  # [4, 2]
    # (1, 0)·(1, -1)/√2 = 1/√2; (3, 0) -> 3/√2; (0, 1) -> -1/√2; (0, 3) -> -3/√2; layer 1: all 0
    assert np.allclose(proj[:, 0], np.array([1, 3, -1, -3]) / math.sqrt(2))
    assert np.allclose(proj[:, 1], 0)
    # calibration scale: harmful mean 2√2 -> 1, benign mean -2√2 -> 0; layer 1 has no scale
    scaled = rd.rescale(proj, np.array([2 * math.sqrt(2), 0]), np.array([-2 * math.sqrt(2), 0]))
    assert np.allclose(scaled[:, 0], [0.625, 0.875, 0.375, 0.125])
    assert np.isnan(scaled[:, 1]).all()
    with pytest.raises(ValueError):
        rd.difference_of_means(harmful[:0], benign)


def test_midranks_share_tied_ranks():
    assert rd.midranks([30, 10, 20, 20]).tolist() == [4, 1, 2.5, 2.5]


def test_auroc_is_mann_whitney_with_ties_counting_a_half():
    # pairs (pos, neg): 3>1, 3>0, 1=1 (½), 1>0, 2>1, 2>0 -> 5.5 of 6
    assert rd.auroc([3, 1, 2], [1, 0]) == pytest.approx(5.5 / 6)
    assert rd.auroc([1, 1], [1, 1]) == 0.5
    assert rd.auroc([0], [1, 2]) == 0.0
    assert rd.auroc([], [1]) is None


def test_separation_is_the_standardised_mean_difference():
    # means 2 and 0; population variances 1 and 0 -> pooled SD √0.5
    assert rd.separation([1, 3], [0, 0]) == pytest.approx(2 / math.sqrt(0.5))
    assert rd.separation([1, 1], [1, 1]) == 0.0
    assert rd.separation([2, 2], [1, 1]) == math.inf


def test_spearman_uses_midranks():
    assert rd.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
    assert rd.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    # ranks (1, 2, 3) and (1.5, 1.5, 3), centred (-1, 0, 1) and (-.5, -.5, 1): 1.5 / √(2 · 1.5)
    assert rd.spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(1.5 / math.sqrt(3))
    assert rd.spearman([1, 2, 3], [5, 5, 5]) is None
    assert rd.spearman([1, 2], [1, 2]) is None


def test_stratified_folds_are_disjoint_cover_everything_balance_classes_and_follow_the_seed():
    labels = [True] * 6 + [False] * 9
    folds = rd.stratified_folds(labels, 3, seed=0)
    together = np.concatenate(folds)
    assert sorted(together.tolist()) == list(range(15))  # disjoint and complete
    assert [int(np.asarray(labels)[f].sum()) for f in folds] == [2, 2, 2]
    assert [len(f) for f in folds] == [5, 5, 5]
    assert all((a == b).all() for a, b in zip(folds, rd.stratified_folds(labels, 3, seed=0), strict=True))
    assert any((a != b).any() for a, b in zip(folds, rd.stratified_folds(labels, 3, seed=1), strict=True))


@pytest.mark.parametrize("d", [3, 40])  # fewer and more features than the 24 examples (the row-span path)
def test_logistic_fit_matches_scikit_learns_default_objective(d):
    # reference: scikit-learn's LogisticRegression (L2, C = 1, intercept unpenalised), the objective
    # fit_logistic documents; lbfgs run to a tight tolerance
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, d))
    y = (x[:, 0] + 0.8 * rng.normal(size=24) > 0).astype(float)
    w, b = rd.fit_logistic(x, y, l2=1.0)
    ref = LogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(x, y)
    assert np.allclose(w, ref.coef_[0], atol=1e-5)
    assert b == pytest.approx(ref.intercept_[0], abs=1e-5)


def test_probe_accuracy_separates_separable_states_and_needs_two_per_class():
    rng = np.random.default_rng(1)
    labels = np.array([True] * 10 + [False] * 10)
    x = rng.normal(size=(20, 4))
    x[labels, 1] += 10.0  # one feature tells the classes apart by a wide margin
    assert rd.probe_accuracy(x, labels, folds=5, seed=0) == 1.0
    assert rd.probe_accuracy(x[:11], labels[:11], folds=5, seed=0) is None  # one benign example only


def test_token_mass_sums_the_softmax_over_distinct_ids():
    logits = np.array([[0.0, 0.0, math.log(2)], [0.0, 0.0, 0.0]])  # probs (¼, ¼, ½) and (⅓, ⅓, ⅓)
    assert np.allclose(rd.token_mass(logits, [2, 2, 0]), [0.75, 2 / 3])
