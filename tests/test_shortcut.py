"""The shortcut check finds MI that sits in brightness, and not MI carried by a high-frequency pattern.
(A random pattern sits in between: its share of the lowest frequencies leaks ≈ 25 % of the MI.)"""

import numpy as np

from mi_datagen.bench.shortcut import shortcut_check, trivial_statistics


def pair(template: np.ndarray, rho: float, n: int = 3000, seed: int = 0):
    """x = ρ·u·T + ε, y = ρ·u·T + ε' with unit-norm T (3×8×8): exact I = ½ log(1 + 2ρ²... ) below."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(n)
    t = template / np.linalg.norm(template)
    shared = rho * u[:, None] * t.reshape(1, -1)
    x = (shared + rng.standard_normal((n, t.size))).reshape(n, 3, 8, 8)
    y = (shared + rng.standard_normal((n, t.size))).reshape(n, 3, 8, 8)
    r = rho ** 2 / (1 + rho ** 2)  # correlation of the projections on T
    return x, y, -0.5 * np.log(1 - r ** 2)


def test_statistics_shape_and_values():
    x = np.zeros((2, 3, 8, 8))
    x[1] += 2.0
    s = trivial_statistics(x)
    assert s.shape == (2, 3 + 2 * 3 * 3)
    assert np.allclose(s[1, :3], 2.0) and np.allclose(s[:, 3:], 0.0)  # a constant image has no low frequency


def test_brightness_carries_the_mi_and_a_high_frequency_pattern_does_not():
    x, y, truth = pair(np.ones((3, 8, 8)), rho=3.0)
    res = shortcut_check(x, y, truth, n=3000)
    assert res["share"] > 0.7, res  # the `ones` template is brightness: the shortcut gets most of it
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    checker = np.broadcast_to((-1.0) ** (i + j), (3, 8, 8))  # all its energy at the highest frequency
    x, y, truth = pair(checker, rho=3.0)
    res = shortcut_check(x, y, truth, n=3000)
    assert res["share"] < 0.2, res
