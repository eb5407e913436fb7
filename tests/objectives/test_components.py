"""Batched connected components vs scipy.ndimage.label (same labels, raster order)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from diod_ray.objectives.components import connected_components, label_regions


def _structure(connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)


def _scipy_labels(binary: np.ndarray, connectivity: int) -> np.ndarray:
    return np.stack([ndimage.label(b, _structure(connectivity))[0] for b in binary])


@pytest.mark.parametrize("connectivity", [4, 8])
def test_random_maps_equal_scipy(connectivity):
    rng = np.random.default_rng(connectivity)
    for _ in range(40):
        h, w = (int(x) for x in rng.integers(1, 33, 2))
        density = rng.uniform(0.05, 0.95)
        binary = rng.random((6, h, w)) < density
        ours = connected_components(torch.from_numpy(binary), connectivity).numpy()
        # identical labels, not only the same partition: both number components in raster order
        np.testing.assert_array_equal(ours, _scipy_labels(binary, connectivity))


@pytest.mark.parametrize("connectivity", [4, 8])
def test_smooth_blobs_equal_scipy(connectivity):
    """Blobby maps (long, winding components) at a TRI-PD-like aspect ratio."""
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(4, 1, 60, 121, generator=g)
    smooth = torch.nn.functional.avg_pool2d(noise, 7, stride=1, padding=3).squeeze(1)
    binary = (smooth > 0.05).numpy()
    ours = connected_components(torch.from_numpy(binary), connectivity).numpy()
    np.testing.assert_array_equal(ours, _scipy_labels(binary, connectivity))


def test_spiral_and_edge_cases():
    # a one-pixel-wide spiral: a single component with a very long geodesic diameter
    n = 31
    spiral = np.zeros((n, n), dtype=bool)
    top, left, bottom, right = 0, 0, n - 1, n - 1
    while top <= bottom and left <= right:
        spiral[top, left : right + 1] = True
        spiral[top : bottom + 1, right] = True
        spiral[bottom, left : right + 1] = True
        spiral[top + 2 : bottom + 1, left] = True
        if top + 2 <= bottom:
            spiral[top + 2, left : right - 1] = True
        top, left, bottom, right = top + 4, left + 2, bottom - 2, right - 2
    checker = (np.indices((9, 11)).sum(0) % 2).astype(bool)
    cases = [spiral, np.zeros((5, 7), bool), np.ones((5, 7), bool), checker]
    for case in cases:
        for conn in (4, 8):
            ours = connected_components(torch.from_numpy(case[None]), conn).numpy()[0]
            np.testing.assert_array_equal(ours, ndimage.label(case, _structure(conn))[0])
    # checkerboard: every pixel alone with 4-connectivity, one component with 8
    assert connected_components(torch.from_numpy(checker[None]), 4).max() == checker.sum()
    assert connected_components(torch.from_numpy(checker[None]), 8).max() == 1


def test_one_row_and_one_column():
    row = torch.tensor([[[1, 1, 0, 1, 0, 0, 1, 1, 1]]], dtype=torch.bool)
    assert connected_components(row, 4).tolist() == [[[1, 1, 0, 2, 0, 0, 3, 3, 3]]]
    col = row.transpose(1, 2)
    assert connected_components(col, 8).flatten().tolist() == [1, 1, 0, 2, 0, 0, 3, 3, 3]


def test_label_regions_multiclass_partition():
    """Regions of equal class: each class's components, scipy per class, same partition."""
    rng = np.random.default_rng(7)
    classes = rng.integers(0, 4, (5, 17, 23))
    active = rng.random((5, 17, 23)) < 0.85
    for conn in (4, 8):
        regions = label_regions(torch.from_numpy(classes), torch.from_numpy(active), conn)
        labels = regions.pixel_labels().numpy()
        assert (labels[~active] == 0).all()
        for i in range(5):
            expected = 0
            for c in range(4):
                ref, k = ndimage.label((classes[i] == c) & active[i], _structure(conn))
                expected += k
                for j in range(1, k + 1):
                    ours = np.unique(labels[i][ref == j])
                    assert len(ours) == 1 and ours[0] > 0  # one of our regions per scipy one
            assert int(regions.num_regions[i]) == expected == len(np.unique(labels[i][active[i]]))
        assert int(regions.region_size.sum()) == int(active.sum())
        # region sizes equal the pixel counts of the labels
        offset = (torch.cumsum(regions.num_regions, 0) - regions.num_regions).numpy()
        for g, (frame, size) in enumerate(zip(regions.region_frame, regions.region_size)):
            local = g - offset[int(frame)] + 1
            assert int(size) == int((labels[int(frame)] == local).sum())


def test_bad_input():
    with pytest.raises(TypeError, match="bool"):
        connected_components(torch.zeros(1, 3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="connectivity"):
        connected_components(torch.zeros(1, 3, 3, dtype=torch.bool), 6)
    with pytest.raises(ValueError, match=r"\[N, h, w\]"):
        connected_components(torch.zeros(3, 3, dtype=torch.bool))
