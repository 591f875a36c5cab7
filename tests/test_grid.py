"""Mask positions and the coarse-to-fine order (pure numpy)."""

import numpy as np
import pytest

from occlusion_widget.engine.grid import MaskGrid, axis_spans, fill_from_coarse, lattice_steps, resolve_pair


def test_axis_spans_clipping_and_full_size():
    starts, ends = axis_spans(10, 4, 3, clipping=True)  # centres 0, 3, 6, 9
    np.testing.assert_array_equal(starts, [0, 1, 4, 7])
    np.testing.assert_array_equal(ends, [2, 5, 8, 10])
    starts, ends = axis_spans(10, 4, 3, clipping=False)  # corners 0, 3, 6 (6 + 4 <= 10)
    np.testing.assert_array_equal(starts, [0, 3, 6])
    np.testing.assert_array_equal(ends - starts, [4, 4, 4])


def test_resolve_pair_rules():
    assert resolve_pair("auto", "mask_size", (224, 100), 0.2) == (45, 20)
    assert resolve_pair(7, "stride", (50, 50), 0.1) == (7, 7)
    assert resolve_pair((3, 5), "stride", (50, 50), 0.1) == (3, 5)
    assert resolve_pair(9, "mask_size", (1, 50), 0.2) == (1, 9)  # a 1-D signal's height stays 1
    with pytest.raises(ValueError, match="stride"):
        resolve_pair(0, "stride", (10, 10), 0.1)
    with pytest.raises(TypeError, match="mask_size"):
        resolve_pair(True, "mask_size", (10, 10), 0.2)


def test_coarse_to_fine_order_is_a_permutation_with_the_coarse_lattice_first():
    grid = MaskGrid.build((50, 70), (5, 5), (3, 3), True)
    order = grid.coarse_to_fine()
    assert sorted(order.tolist()) == list(range(grid.size))
    gy, gx = grid.shape
    n_coarse = len(range(0, gy, 4)) * len(range(0, gx, 4))
    iy, ix = np.unravel_index(order[:n_coarse], grid.shape)
    assert (iy % 4 == 0).all() and (ix % 4 == 0).all()
    n_mid = len(range(0, gy, 2)) * len(range(0, gx, 2))
    iy, ix = np.unravel_index(order[:n_mid], grid.shape)
    assert (iy % 2 == 0).all() and (ix % 2 == 0).all()


def test_fill_from_coarse_uses_the_nearest_lattice_point():
    values = np.arange(9 * 9, dtype=np.float32).reshape(1, 9, 9)
    computed = np.zeros((9, 9), bool)
    assert np.isnan(fill_from_coarse(values, computed)).all()
    computed[::4, ::4] = True
    filled = fill_from_coarse(values, computed)
    assert filled[0, 1, 1] == values[0, 0, 0]  # 1 is nearer to 0 than to 4
    assert filled[0, 3, 7] == values[0, 4, 8]
    assert filled[0, 8, 8] == values[0, 8, 8]
    computed[::2, ::2] = True
    filled = fill_from_coarse(values, computed)
    assert filled[0, 3, 3] == values[0, 4, 4] and filled[0, 1, 0] == values[0, 0, 0]


def test_mask_larger_than_input_is_refused():
    with pytest.raises(ValueError, match="mask_size"):
        MaskGrid.build((10, 10), (11, 3), (1, 1), True)


def test_large_grids_start_with_a_coarser_lattice():
    assert lattice_steps((11, 11)) == (4, 2, 1)
    assert lattice_steps((28, 28)) == (8, 4, 2, 1)  # stride 8 on 224: 16 positions cover the image first
    assert lattice_steps((224, 224)) == (16, 8, 4, 2, 1)
    grid = MaskGrid.build((224, 224), (9, 9), (1, 1), True)
    first = grid.coarse_to_fine()[: 14 * 14]
    iy, ix = np.unravel_index(first, grid.shape)
    assert (iy % 16 == 0).all() and (ix % 16 == 0).all()
    values = np.random.default_rng(0).random((1, 224, 224)).astype(np.float32)
    computed = np.zeros((224, 224), bool)
    computed[::16, ::16] = True
    filled = fill_from_coarse(values, computed)
    assert np.isfinite(filled).all() and filled[0, 7, 9] == values[0, 0, 16]
