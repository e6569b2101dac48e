"""Volume-wide intensity statistics per channel, with one channel per chunk."""

from __future__ import annotations

import numpy as np
import zarr

from volumetric.io.intensity import intensity_stats


def test_per_channel_statistics_sample_every_channel():
    data = np.stack([np.full((12, 20, 20), 100.0 * c) for c in range(3)])
    data[:, :, :10] += 1.0  # a second value in every channel
    array = zarr.create_array(store={}, shape=data.shape, chunks=(1, 6, 10, 10), dtype="f4")
    array[...] = data
    stats = intensity_stats(array, channel_axis=0, max_chunks=4)
    assert stats["chunks_read"] == 4
    np.testing.assert_allclose(stats["mean"], [0.5, 100.5, 200.5])
    np.testing.assert_allclose(stats["low"], [0.0, 100.0, 200.0])
    np.testing.assert_allclose(stats["high"], [1.0, 101.0, 201.0])
