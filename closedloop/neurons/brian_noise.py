"""The cells' noise and a fast exp, with the same numbers in numpy and in C++ (standalone).

Noise is drawn by a counter-based generator: a 64-bit hash (splitmix64 finaliser) of
(seed, neuron index, time step), whose four 16-bit fields summed give an Irwin-Hall(4) variate
scaled to unit variance (excess kurtosis -0.3; the OU filter over tau/dt ~ 200 steps makes the
noise current Gaussian to within a fraction of a percent). It costs a few ns, needs no
per-thread state (so results do not depend on the number of OpenMP threads), and the numpy
implementation here returns bit-identical numbers.
"""

from __future__ import annotations

import numpy as np

_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_UNIFORM_SALT = 0xD1B54A32D192ED03

_CPP_HASH = """
static inline uint64_t closedloop_mix(int32_t i, int64_t step, int32_t seed, uint64_t salt) {
    uint64_t x = (((uint64_t)(uint32_t)seed << 32) | (uint64_t)(uint32_t)i) ^ salt;
    x += (uint64_t)step * 0x9E3779B97F4A7C15ULL;
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27; x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}
"""
_CPP_NORMAL = _CPP_HASH + """
static inline double noise_normal(int32_t i, int64_t step, int32_t seed) {
    const uint64_t x = closedloop_mix(i, step, seed, 0ULL);
    const double s = (double)((x & 0xFFFFULL) + ((x >> 16) & 0xFFFFULL) + ((x >> 32) & 0xFFFFULL) + (x >> 48));
    return (s * (1.0 / 65536.0) - 2.0) * 1.7320508075688772;
}
"""
_CPP_UNIFORM = """
static inline double spike_uniform(int32_t i, int64_t step, int32_t seed) {
    return (double)(closedloop_mix(i, step, seed, 0xD1B54A32D192ED03ULL) >> 11) * (1.0 / 9007199254740992.0);
}
"""
_CPP_EXP = """
static inline double hazard_exp(double x) {
    double t = x * 1.4426950408889634;
    t = t < -1000.0 ? -1000.0 : (t > 1000.0 ? 1000.0 : t);
    const double n = floor(t);
    const double g = (t - n) * 0.6931471805599453;
    const double p = 1.0 + g * (1.0 + g * (0.5 + g * (1.0 / 6 + g * (1.0 / 24 + g * (1.0 / 120 + g * (1.0 / 720 + g * (1.0 / 5040)))))));
    union { double d; int64_t i; } scale;
    scale.i = ((int64_t)n + 1023) << 52;
    return p * scale.d;
}
"""


CPP_CODE = (_CPP_NORMAL, _CPP_UNIFORM, _CPP_EXP)  # part of a binary's cache key


def hazard_exp_numpy(x) -> np.ndarray:
    """exp(x) to ~2e-6 relative error as 2^n * poly(f): the same formula as the C++ version, which
    is ~4x faster than libm's exp in Brian2's (scalar) threshold loop."""
    t = np.clip(np.asarray(x, dtype=np.float64) * 1.4426950408889634, -1000.0, 1000.0)
    n = np.floor(t)
    g = (t - n) * 0.6931471805599453
    p = 1.0 + g * (1.0 + g * (0.5 + g * (1.0 / 6 + g * (1.0 / 24 + g * (1.0 / 120 + g * (1.0 / 720 + g * (1.0 / 5040)))))))
    return p * np.ldexp(1.0, n.astype(np.int64))


def _mix(i, step, seed, salt: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        i = np.asarray(i).astype(np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)
        seed = np.asarray(seed).astype(np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)
        x = ((seed << np.uint64(32)) | i) ^ np.uint64(salt)
        x = x + np.asarray(step).astype(np.int64).astype(np.uint64) * np.uint64(_GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX2)
        return x ^ (x >> np.uint64(31))


def noise_normal_numpy(i, step, seed) -> np.ndarray:
    x = _mix(i, step, seed, 0)
    m = np.uint64(0xFFFF)
    s = ((x & m) + ((x >> np.uint64(16)) & m) + ((x >> np.uint64(32)) & m) + (x >> np.uint64(48))).astype(np.float64)
    return (s * (1.0 / 65536.0) - 2.0) * 1.7320508075688772


def spike_uniform_numpy(i, step, seed) -> np.ndarray:
    return (_mix(i, step, seed, _UNIFORM_SALT) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def brian_functions():
    """The noise and exp functions as Brian2 Functions with numpy and C++ implementations."""
    from brian2 import Function

    def brian_function(numpy_fn, name, cpp, dependencies=None):
        def vectorised(i, step, seed):
            return numpy_fn(i, step, seed) * np.ones(np.shape(i))
        vectorised.__name__ = name
        function = Function(vectorised, arg_units=[1, 1, 1], return_unit=1,
                            arg_types=["integer", "integer", "integer"], return_type="float")
        function.implementations.add_numpy_implementation(vectorised, discard_units=True)
        function.implementations.add_implementation("cpp", cpp, name=name, dependencies=dependencies)
        return function

    normal = brian_function(noise_normal_numpy, "noise_normal", _CPP_NORMAL)
    uniform = brian_function(spike_uniform_numpy, "spike_uniform", _CPP_UNIFORM, {"noise_normal": normal})
    fast_exp = Function(hazard_exp_numpy, arg_units=[1], return_unit=1, arg_types=["float"], return_type="float")
    fast_exp.implementations.add_numpy_implementation(hazard_exp_numpy, discard_units=True)
    fast_exp.implementations.add_implementation("cpp", _CPP_EXP, name="hazard_exp")
    return normal, uniform, fast_exp
