"""Streaming feature statistics and the two distances computed from them: Fréchet distance and KID.

Pure NumPy (no TensorFlow). Feature vectors arrive in batches ``[n, D]``; :class:`FeatureStats`
keeps, in bounded memory whatever the number of images:

* the count, the mean and the covariance (float64 sums of x and x x^T around a fixed shift, so that
  50,000 Inception vectors cost 2 x 2048^2 x 8 bytes = 64 MiB, not the vectors themselves);
* a uniform random sample (reservoir) of at most ``capacity`` vectors, for KID.

Definitions (as NVIDIA's ``metrics/frechet_inception_distance.py`` and
``metrics/kernel_inception_distance.py``):

* Fréchet distance of N(mu1, S1) and N(mu2, S2): ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``,
  covariances with the unbiased 1/(n-1) normalisation.
* KID: the unbiased MMD^2 estimate with the cubic polynomial kernel ``k(x, y) = (x.y / D + 1)^3``,
  averaged over ``num_subsets`` random subsets of ``m = min(n_fake, n_real, max_subset_size)``
  vectors of each set.
"""

import numpy as np


class FeatureStats:
    """Running count / mean / covariance of feature vectors plus a reservoir sample.

    Args:
        dim: feature size D.
        capacity: most vectors kept for KID (uniform sample of everything appended; 0 keeps none).
        seed: seed of the reservoir's choices.
    """

    def __init__(self, dim, capacity=10000, seed=0):
        self.dim, self.capacity = int(dim), int(capacity)
        self.count = 0
        self._shift = None                                   # first batch's mean: keeps sums small
        self._sum = np.zeros([self.dim], np.float64)
        self._sum_sq = np.zeros([self.dim, self.dim], np.float64)
        self._sample = np.zeros([min(self.capacity, 1024), self.dim], np.float32)
        self._rng = np.random.RandomState(seed)

    def append(self, features):
        """Add a batch ``[n, D]`` of feature vectors."""
        x = np.asarray(features, np.float64).reshape(-1, self.dim)
        if not len(x):
            return
        if self._shift is None:
            self._shift = x.mean(axis=0)
        centred = x - self._shift
        self._sum += centred.sum(axis=0)
        self._sum_sq += centred.T @ centred
        self._reservoir(x.astype(np.float32))
        self.count += len(x)

    def _reservoir(self, x):
        """Algorithm R: vector t (0-based, over all appends) is kept with probability capacity/(t+1)."""
        if not self.capacity:
            return
        for i, row in enumerate(x):
            t = self.count + i
            slot = t if t < self.capacity else self._rng.randint(0, t + 1)
            if slot < self.capacity:
                if slot >= len(self._sample):
                    grown = np.zeros([min(self.capacity, 2 * len(self._sample)), self.dim], np.float32)
                    grown[:len(self._sample)] = self._sample
                    self._sample = grown
                self._sample[slot] = row

    @property
    def mean(self):
        """Mean vector [D] (float64)."""
        return self._shift + self._sum / self.count

    @property
    def cov(self):
        """Covariance [D, D] with 1/(n-1) (as ``np.cov``), float64; needs at least 2 vectors."""
        n = self.count
        d = self._sum / n
        return (self._sum_sq - n * np.outer(d, d)) / (n - 1)

    @property
    def sample(self):
        """The reservoir: [min(count, capacity), D] float32, a uniform sample of all vectors."""
        return self._sample[:min(self.count, self.capacity)]


def trace_sqrt_product(cov1, cov2):
    """tr((S1 S2)^(1/2)) for symmetric positive semi-definite S1, S2.

    S1 S2 is similar to S1^(1/2) S2 S1^(1/2), which is symmetric PSD, so the trace is the sum of the
    square roots of its eigenvalues (rounding negatives to 0); only symmetric eigendecompositions
    are used, no general matrix square root.
    """
    vals, vecs = np.linalg.eigh((cov1 + cov1.T) / 2)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = root1 @ cov2 @ root1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum())


def frechet_distance(mu1, cov1, mu2, cov2):
    """Fréchet distance between the Gaussians N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    mean_term = float(np.square(mu1 - mu2).sum())
    return mean_term + float(np.trace(cov1) + np.trace(cov2)) - 2.0 * trace_sqrt_product(cov1, cov2)


def frechet_distance_of(fake, real):
    """Fréchet distance of two :class:`FeatureStats` (each needs at least 2 vectors)."""
    return frechet_distance(fake.mean, fake.cov, real.mean, real.cov)


def mmd2_unbiased(x, y):
    """Unbiased MMD^2 of samples x [m, D] and y [m, D] with the kernel (x.y / D + 1)^3."""
    m, dim = x.shape
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
    across = (x @ y.T / dim + 1) ** 3
    return float((within.sum() - np.trace(within)) / (m * (m - 1)) - 2 * across.sum() / (m * m))


def kernel_distance(fake, real, num_subsets=100, max_subset_size=1000, seed=0):
    """KID: mean unbiased MMD^2 over random subsets (NVIDIA's estimator).

    Args:
        fake, real: feature vectors [n, D] (e.g. ``FeatureStats.sample``); each needs >= 2.
        num_subsets: subsets averaged. max_subset_size: largest subset m.
        seed: seed of the subset choices.
    """
    m = min(len(fake), len(real), max_subset_size)
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        total += mmd2_unbiased(x, y)
    return total / num_subsets
