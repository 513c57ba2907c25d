"""Bayesian linear regression y = b + <g, c> + noise with a diagonal prior g ~ N(0, diag(sd^2) / alpha),
from running weighted sums, with the prior precision alpha (one per group of coefficients) and
the noise precision beta set by evidence maximisation (MacKay's fixed point).

Everything is done with Cholesky factors of k x k matrices (k the number of coefficients the
model holds): no eigendecomposition, so a fit costs a few k^3 / 3 flops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

# the prior is never more than this many times as sure as the data are about their best-measured
# coefficient: a model that sees no slope yet keeps following the data's weak one (a ridge) instead
# of collapsing to the prior, from which MacKay's update escapes only slowly once a slope appears
ALPHA_CAP = 10.0


class Sums:
    """Running sums of the trials, with old trials fading by a factor per tell; `grow` adds
    coordinates that every earlier trial had zero on."""

    def __init__(self, k: int = 0):
        self.k, self.n, self.sy, self.syy = 0, 0.0, 0.0, 0.0
        self.scc, self.sc, self.scy = np.zeros((0, 0)), np.zeros(0), np.zeros(0)
        self.grow(k)

    def grow(self, k: int) -> None:
        if k <= self.k:
            return
        scc = np.zeros((k, k))
        scc[: self.k, : self.k] = self.scc
        self.scc = scc
        self.sc = np.concatenate([self.sc, np.zeros(k - self.k)])
        self.scy = np.concatenate([self.scy, np.zeros(k - self.k)])
        self.k = k

    def add(self, c: np.ndarray, y: np.ndarray, decay: float = 1.0) -> None:
        if decay != 1.0:
            self.scc *= decay
            self.sc *= decay
            self.scy *= decay
            self.n, self.sy, self.syy = self.n * decay, self.sy * decay, self.syy * decay
        self.n += len(y)
        self.scc += c.T @ c
        self.sc += c.sum(axis=0)
        self.scy += c.T @ y
        self.sy += float(y.sum())
        self.syy += float(y @ y)

    def centred(self, index: np.ndarray):
        """(gram, cross, yy, n) of the given coordinates, about the weighted means."""
        n = self.n
        mean = self.sc[index] / n
        gram = self.scc[np.ix_(index, index)] - n * np.outer(mean, mean)
        cross = self.scy[index] - mean * self.sy
        return gram, cross, self.syy - self.sy**2 / n, n

    def informative(self) -> bool:
        """At least three trials and scores that vary."""
        return self.n >= 3 and self.syy - self.sy**2 / self.n > 1e-12 * max(self.syy, 1e-300)


@dataclass
class Posterior:
    sd: np.ndarray  # prior standard deviations of the coefficients, before 1 / alpha
    u: np.ndarray  # posterior mean in whitened coordinates (coefficient / sd)
    inv_chol: np.ndarray  # inverse of the lower Cholesky factor of the whitened posterior precision
    alpha: float  # prior precision
    beta: float  # noise precision
    next_alpha: float  # MacKay's update from this posterior: where the next fit starts
    next_beta: float

    @property
    def mean(self) -> np.ndarray:
        return self.sd * self.u

    def variances(self) -> np.ndarray:
        """Posterior variances of the coefficients."""
        return self.sd**2 * np.sum(self.inv_chol**2, axis=0)

    def deviations(self, xi: np.ndarray) -> np.ndarray:
        """(m, k) draws of coefficients - mean from the posterior, from (m, k) standard normals."""
        return self.sd * (xi @ self.inv_chol)


def fit(gram, cross, yy, n, sd, alpha: float, beta: float, iterations: int) -> Posterior:
    """MacKay's updates of alpha and beta from the given start; the posterior of the last one."""
    k = len(sd)
    g = sd[:, None] * gram * sd[None, :]
    h = sd * cross
    scale = max(float(np.max(np.diag(g), initial=0.0)), 1e-300)
    if not (np.isfinite(alpha) and np.isfinite(beta) and alpha > 0 and beta > 0):
        alpha, beta = 1.0, 1.0
    beta = min(beta, n / yy * 1e6)
    dof = max(n - 1.0, 1.0)
    posterior, done = None, 0
    while done < max(iterations, 1):
        # a ridge never vanishes entirely: keeps the factorisation well posed when scores are exact
        alpha = max(alpha, 1e-9 * beta * scale)
        precision = beta * g
        precision[np.diag_indices(k)] += alpha
        chol, info = lapack.dpotrf(precision, lower=1, clean=1)
        if info != 0:  # rounding made the matrix indefinite: more ridge
            alpha *= 10.0
            continue
        done += 1
        inv_chol, _ = lapack.dtrtri(chol, lower=1)
        u = beta * (inv_chol.T @ (inv_chol @ h))
        effective = k - alpha * float(np.sum(inv_chol**2))
        rss = max(yy - 2 * u @ h + u @ g @ u, 1e-9 * yy)
        next_alpha = min(max(effective, 1e-6) / max(u @ u, 1e-300), ALPHA_CAP * beta * scale)
        next_beta = min(max(dof - effective, 1.0) / rss, n / yy * 1e6)
        posterior = Posterior(sd, u, inv_chol, alpha, beta, next_alpha, next_beta)
        alpha, beta = next_alpha, next_beta
    return posterior
