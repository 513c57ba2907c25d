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
    sd: np.ndarray  # prior standard deviations of the coefficients, before 1 / alpha of their group
    u: np.ndarray  # posterior mean in whitened coordinates (coefficient / sd)
    inv_chol: np.ndarray  # inverse of the lower Cholesky factor of the whitened posterior precision
    alpha: np.ndarray  # prior precision per group
    beta: float  # noise precision
    next_alpha: np.ndarray  # MacKay's update from this posterior: where the next fit starts
    next_beta: float

    @property
    def mean(self) -> np.ndarray:
        return self.sd * self.u

    def variances(self) -> np.ndarray:
        """Posterior variances of the coefficients."""
        return self.sd**2 * np.sum(self.inv_chol**2, axis=0)

    def deviations(self, xi: np.ndarray, columns=slice(None)) -> np.ndarray:
        """(m, len(columns)) draws of coefficients - mean from the posterior, from (m, k) standard normals."""
        return self.sd[columns] * (xi @ self.inv_chol[:, columns])


def fit(gram, cross, yy, n, sd, groups, alpha, beta: float, iterations: int) -> Posterior:
    """MacKay's updates of alpha (one per group of coefficients) and beta from the given start;
    the posterior of the last one."""
    k = len(sd)
    g = sd[:, None] * gram * sd[None, :]
    h = sd * cross
    counts = np.bincount(groups).astype(float)
    scale = max(float(np.max(np.diag(g), initial=0.0)), 1e-300)
    alpha = np.array(alpha, dtype=float) * np.ones(len(counts))
    if not (np.all(np.isfinite(alpha)) and np.all(alpha > 0) and np.isfinite(beta) and beta > 0):
        alpha, beta = np.ones(len(counts)), 1.0
    beta = min(beta, n / yy * 1e6)
    dof = max(n - 1.0, 1.0)
    posterior, done = None, 0
    while done < max(iterations, 1):
        # a ridge never vanishes entirely: keeps the factorisation well posed when scores are exact
        alpha = np.maximum(alpha, 1e-9 * beta * scale)
        precision = beta * g
        precision[np.diag_indices(k)] += alpha[groups]
        chol, info = lapack.dpotrf(precision, lower=1, clean=1)
        if info != 0:  # rounding made the matrix indefinite: more ridge
            alpha = alpha * 10.0
            continue
        done += 1
        inv_chol, _ = lapack.dtrtri(chol, lower=1)
        u = beta * (inv_chol.T @ (inv_chol @ h))
        diagonal = np.sum(inv_chol**2, axis=0)
        effective = counts - alpha * np.bincount(groups, weights=diagonal, minlength=len(counts))
        rss = max(yy - 2 * u @ h + u @ g @ u, 1e-9 * yy)
        squares = np.bincount(groups, weights=u**2, minlength=len(counts))
        # with scores that carry nothing, alpha would grow without bound: the prior stays a prior
        next_alpha = np.minimum(np.maximum(effective, 1e-6) / np.maximum(squares, 1e-300), 1e9 * beta * scale)
        next_beta = min(max(dof - effective.sum(), 1.0) / rss, n / yy * 1e6)
        posterior = Posterior(sd, u, inv_chol, alpha, beta, next_alpha, next_beta)
        alpha, beta = next_alpha, next_beta
    return posterior


def best_on_sphere(g: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The unit vector c maximising <g, c> + sum_j a_j c_j^2: c_j = g_j / (2 (mu - a_j)) with mu
    above every a_j, found by Newton's method on 1 / |c(mu)| safeguarded by bisection (the
    trust-region subproblem with a diagonal quadratic). Where g vanishes on the largest a_j
    ("hard case"), the rest of the unit norm goes there."""
    top = float(a.max())
    j = int(np.argmax(a))
    scale = max(float(np.linalg.norm(g)), 1e-300)
    tiny = 1e-12 * max(scale, abs(top), 1e-300)

    def c_of(mu):
        return g / (2 * np.maximum(mu - a, 1e-300))

    rest = c_of(top + tiny)
    rest[a >= top - tiny] = 0.0
    if np.linalg.norm(rest) <= 1 and abs(g[j]) <= 1e-6 * scale:  # hard case
        rest[j] = np.sqrt(max(1.0 - rest @ rest, 0.0))
        return rest / np.linalg.norm(rest)
    lo, hi = top, top + scale / 2 + tiny  # |c(hi)| <= 1 < |c(mu)| near top
    mu = hi
    for _ in range(60):
        c = c_of(mu)
        norm = float(np.linalg.norm(c))
        if abs(norm - 1.0) < 1e-10:
            break
        if norm > 1:
            lo = mu
        else:
            hi = mu
        # Newton on phi(mu) = 1/|c| - 1, which is nearly linear in mu
        slope = float(np.sum(c**2 / np.maximum(mu - a, 1e-300))) / norm**3
        step = mu - (1.0 / norm - 1.0) / slope if slope > 0 else np.nan
        mu = step if lo < step < hi else 0.5 * (lo + hi)
    c = c_of(mu)
    return c / np.linalg.norm(c)
