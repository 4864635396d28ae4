"""Candidate subsets, the secret draw and subset aggregation."""

import numpy as np
import pytest
from scipy import stats

from paczero.subsets import (
    CandidateSubsets,
    Secret,
    build_subsets,
    draw_secret,
    privacy_entropy,
    privacy_generators,
)


def test_every_example_is_in_exactly_half_of_the_subsets():
    subsets = build_subsets(200, 16, np.random.default_rng(0))
    assert subsets.membership.shape == (16, 200)
    np.testing.assert_array_equal(subsets.membership.sum(axis=0), np.full(200, 8))
    assert set(np.unique(subsets.membership)) == {0.0, 1.0}


def test_membership_is_uniform_over_subsets():
    subsets = build_subsets(4000, 8, np.random.default_rng(1))
    counts = subsets.membership.sum(axis=1)  # each subset should hold about N/2
    assert stats.chisquare(counts).pvalue > 1e-3


def test_subset_means_are_one_matrix_product_of_the_right_values():
    rng = np.random.default_rng(2)
    subsets = build_subsets(50, 6, rng)
    g = rng.normal(size=50)
    expected = [g[subsets.membership[k] == 1].mean() for k in range(6)]
    np.testing.assert_allclose(subsets.means(g), expected)
    np.testing.assert_array_equal(subsets.signs(g), np.where(np.array(expected) >= 0, 1.0, -1.0))


def test_empty_subsets_are_rejected_at_construction():
    membership = np.zeros((4, 3))
    membership[[0, 1], 0] = membership[[0, 1], 1] = membership[[0, 1], 2] = 1
    with pytest.raises(ValueError, match="empty"):
        CandidateSubsets(membership)


@pytest.mark.parametrize("m", [0, 1, 3, 7])
def test_subset_count_must_be_even(m):
    with pytest.raises(ValueError, match="even"):
        build_subsets(10, m, np.random.default_rng(0))


def test_secret_is_uniform_over_many_draws():
    m, draws = 16, 16000
    rng, _, _ = privacy_generators(123)
    counts = np.bincount([draw_secret(m, rng).reveal() for _ in range(draws)], minlength=m)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_secret_repr_hides_the_index():
    s = Secret(5, 8)
    assert "5" not in repr(s) and "5" not in str(s) and "5" not in f"{s}"
    with pytest.raises(ValueError) as err:
        Secret(9, 8)
    assert "9" not in str(err.value)


def test_privacy_streams_are_reproducible_and_secure_mode_is_not():
    a1, b1, c1 = privacy_generators(7)
    a2, b2, c2 = privacy_generators(7)
    assert a1.integers(1 << 62) == a2.integers(1 << 62) and b1.random() == b2.random()
    assert c1.random() == c2.random()
    s1, _, _ = privacy_generators(privacy_entropy(7, secure=True))
    s2, _, _ = privacy_generators(privacy_entropy(7, secure=True))
    assert s1.integers(1 << 62) != s2.integers(1 << 62)
    assert privacy_entropy(7, secure=False) == 7
    with pytest.raises(ValueError):
        privacy_entropy(None, secure=False)
