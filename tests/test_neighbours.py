"""registration.matching's numpy neighbour searches equal scipy's cKDTree (which they
replace on the stack path): same indices, same distances, same bounds (strict for
``query``, inclusive for ``query_ball_point``), including points exactly on the bound."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_astro.core.registration.matching import _knn_self, _Points, match_stars_nearest


@pytest.mark.parametrize("seed,n,m", [(0, 250, 250), (1, 86, 40), (2, 3, 500), (3, 1, 7)])
def test_query_equals_ckdtree(seed, n, m):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 1000, (n, 2))
    near = pts[: m // 4]
    q = np.vstack([rng.uniform(0, 1000, (m, 2)), near + rng.normal(0, 1.5, near.shape)])
    tree, ours = cKDTree(pts), _Points(pts)
    for bound in (0.5, 3.0, 40.0, np.inf):
        d1, j1 = tree.query(q, distance_upper_bound=bound)
        d2, j2 = ours.query(q, distance_upper_bound=bound)
        assert np.array_equal(j1, j2)
        assert np.array_equal(d1, d2)
        if np.isfinite(bound):
            assert np.array_equal(ours.any_within(q, bound), np.isfinite(d1))


def test_bounds_on_the_boundary():
    pts = np.array([[0.0, 0.0], [3.0, 0.0], [10.0, 10.0]])
    q = np.array([[0.0, 3.0], [6.0, 0.0], [13.0, 14.0]])
    tree, ours = cKDTree(pts), _Points(pts)
    for bound in (3.0, 5.0, np.nextafter(3.0, 4.0)):
        assert np.array_equal(tree.query(q, distance_upper_bound=bound)[1],
                              ours.query(q, distance_upper_bound=bound)[1])
    for r in (3.0, 5.0, np.nextafter(3.0, 0.0)):
        lists = tree.query_ball_point(q, r=r)
        qi, pj = ours.pairs_within(q, r)
        assert list(pj) == [j for x in lists for j in x]
        assert list(qi) == [i for i, x in enumerate(lists) for _ in x]


def test_pairs_within_equals_ball_point_on_invariants():
    rng = np.random.default_rng(5)
    inv_r = rng.uniform(0, 1, (900, 2))
    inv_s = np.vstack([rng.uniform(0, 1, (600, 2)), inv_r[:300] + rng.normal(0, 0.005, (300, 2))])
    lists = cKDTree(inv_r).query_ball_point(inv_s, r=0.01)
    si, ri = _Points(inv_r).pairs_within(inv_s, 0.01)
    assert np.array_equal(si, np.repeat(np.arange(len(inv_s)), [len(x) for x in lists]))
    assert np.array_equal(ri, np.array([j for x in lists for j in x], dtype=np.int64))


def test_knn_and_mutual_nearest():
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 500, (40, 2))
    assert np.array_equal(_knn_self(xy, 6), cKDTree(xy).query(xy, k=6)[1])
    a = rng.uniform(0, 500, (200, 2))
    b = np.vstack([a[:150] + rng.normal(0, 0.5, (150, 2)), rng.uniform(0, 500, (60, 2))])
    i, j = match_stars_nearest(a, b, tol=1.5)
    ta, tb = cKDTree(a), cKDTree(b)
    d, jj = tb.query(a, distance_upper_bound=1.5)
    ok = np.flatnonzero(np.isfinite(d))
    back = ta.query(b[jj[ok]])[1]
    mutual = back == ok
    assert np.array_equal(i, ok[mutual]) and np.array_equal(j, jj[ok][mutual])
    assert len(i) > 100
