"""audio-linear-probe: ESC-50's supervised fold protocol (train on the other folds, test on each) with CLIP's
logistic-regression probe, checked by hand and against scikit-learn's LogisticRegression."""
from __future__ import annotations

import pytest
import torch

from clipdense.errors import DataError
from clipdense.evaluation.audio import fold_linear_probe


def test_each_fold_is_predicted_by_a_probe_that_never_saw_it() -> None:
    # fold 2 holds the only examples of class 2: a probe trained on fold 1 cannot predict it
    features = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 1, 0, 2])
    folds = torch.tensor([1, 1, 2, 2])
    out = fold_linear_probe(features, labels, folds, num_classes=3, weight_decay=1e-4)
    assert out["per_fold"][2] == pytest.approx(0.5)    # class 0 right, class 2 unseen in training: wrong
    assert out["per_fold"][1] == pytest.approx(0.5)    # class 1 only in fold 1: wrong; class 0 right
    assert out["top1_mean_over_folds"] == pytest.approx(0.5) and out["weight_decay"] == {1: 1e-4, 2: 1e-4}
    with pytest.raises(DataError, match="at least 2 folds"):
        fold_linear_probe(features, labels, torch.ones(4, dtype=torch.long), 3)


def test_fold_probe_equals_scikit_learn_logistic_regression() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=gen)
    labels = torch.arange(4).repeat(15)
    features = centres[labels] + 0.9 * torch.randn(60, 8, generator=gen)
    folds = torch.arange(5).repeat_interleave(12)[torch.randperm(60, generator=gen)] + 1
    decay = 1e-2
    out = fold_linear_probe(features, labels, folds, num_classes=4, weight_decay=decay)
    for fold in range(1, 6):
        train, test = folds != fold, folds == fold
        # ours: mean CE + decay ||W||^2; scikit-learn: C sum CE + ||W||^2 / 2, so C = 1 / (2 decay n)
        model = sklearn.LogisticRegression(C=1 / (2 * decay * int(train.sum())), max_iter=5000, tol=1e-10)
        model.fit(features[train].numpy(), labels[train].numpy())
        expected = float((torch.from_numpy(model.predict(features[test].numpy())) == labels[test]).float().mean())
        assert out["per_fold"][fold] == pytest.approx(expected)
    assert out["top1_mean_over_folds"] > 0.5   # well above chance (25 %) on these clusters


def test_weight_decay_is_chosen_without_the_test_fold() -> None:
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(3).repeat(10)
    features = torch.eye(3)[labels] + 0.3 * torch.randn(30, 3, generator=gen)
    folds = torch.arange(3).repeat_interleave(10) + 1
    out = fold_linear_probe(features, labels, folds, num_classes=3)
    changed = features.clone()
    changed[folds == 3] = torch.randn(10, 3, generator=gen)   # the test fold's features do not pick its decay
    assert fold_linear_probe(changed, labels, folds, num_classes=3)["weight_decay"][3] == out["weight_decay"][3]
