"""Fréchet distance and KID mathematics, checked against closed forms; streaming statistics."""

import numpy as np
import pytest

from stylegan_tl import feature_stats as fs


def _rotation(theta):
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


def test_frechet_distance_of_diagonal_gaussians_is_mean_gap_plus_std_gaps():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert fs.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_non_commuting_2x2_covariances():
    # For 2x2 M with non-negative eigenvalues, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)).
    r = _rotation(0.7)
    cov1 = np.array([[2.0, 0.3], [0.3, 0.5]])
    cov2 = r @ np.diag([3.0, 0.2]) @ r.T
    product = cov1 @ cov2
    tr_sqrt = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    mu1, mu2 = np.array([0.5, -1.0]), np.array([0.0, 2.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * tr_sqrt
    assert fs.frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_is_zero_for_equal_gaussians_and_symmetric():
    rng = np.random.RandomState(0)
    a = rng.randn(6, 6)
    cov = a @ a.T
    mu = rng.randn(6)
    assert abs(fs.frechet_distance(mu, cov, mu, cov)) < 1e-9
    b = rng.randn(6, 6)
    cov2 = b @ b.T + np.eye(6)
    assert fs.frechet_distance(mu, cov, -mu, cov2) == pytest.approx(fs.frechet_distance(-mu, cov2, mu, cov))


def test_streaming_mean_and_covariance_equal_numpy_on_all_vectors_at_once():
    rng = np.random.RandomState(1)
    x = rng.randn(1000, 8) * np.arange(1, 9) + 100.0   # large offset: the shifted sums must cope
    stats = fs.FeatureStats(8, capacity=0)
    for start in range(0, 1000, 37):
        stats.append(x[start:start + 37])
    assert stats.count == 1000
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    assert stats.sample.shape == (0, 8)


def test_reservoir_keeps_every_vector_below_capacity_and_a_uniform_sample_above():
    small = fs.FeatureStats(1, capacity=100)
    small.append(np.arange(60).reshape(-1, 1))
    np.testing.assert_array_equal(small.sample[:, 0], np.arange(60))

    counts = np.zeros(1000)
    for seed in range(200):
        stats = fs.FeatureStats(1, capacity=100, seed=seed)
        for start in range(0, 1000, 64):
            stats.append(np.arange(start, min(start + 64, 1000)).reshape(-1, 1))
        kept = stats.sample[:, 0].astype(int)
        assert len(kept) == 100 and len(set(kept)) == 100
        counts[kept] += 1
    # Each vector is kept with probability 0.1: 20 expected in 200 runs, early and late alike.
    assert abs(counts[:500].mean() - 20) < 1.5 and abs(counts[500:].mean() - 20) < 1.5


def test_mmd_unbiased_estimator_by_hand():
    # D = 1, k(a, b) = (a b + 1)^3. x = {0, 1}, y = {1, 2}:
    # within x: k(0,1) = 1 (twice) -> 2/(2*1) = 1; within y: k(1,2) = 27 -> 27;
    # across: k(0,1) + k(0,2) + k(1,1) + k(1,2) = 1 + 1 + 8 + 27 = 37 -> 2*37/4 = 18.5.
    x, y = np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]])
    assert fs.mmd2_unbiased(x, y) == pytest.approx(1 + 27 - 18.5)
    # The subsets of KID are then the whole sets (any order): the same value.
    assert fs.kernel_distance(x, y, num_subsets=5) == pytest.approx(9.5)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.RandomState(2)
    a, b = rng.randn(400, 16), rng.randn(400, 16)
    shifted = rng.randn(400, 16) + 0.5
    same = fs.kernel_distance(a, b, num_subsets=20, max_subset_size=200)
    different = fs.kernel_distance(a, shifted, num_subsets=20, max_subset_size=200)
    assert abs(same) < 0.02 < different


def test_frechet_distance_of_sampled_gaussians_approaches_the_closed_form():
    rng = np.random.RandomState(3)
    real, fake = fs.FeatureStats(4), fs.FeatureStats(4)
    real.append(rng.randn(20000, 4))
    fake.append(rng.randn(20000, 4) * 2.0 + 1.0)
    # N(0, I) vs N(1, 4I) in 4-D: 4 * 1 + 4 * (2 - 1)^2 = 8.
    assert fs.frechet_distance_of(fake, real) == pytest.approx(8.0, rel=0.03)
