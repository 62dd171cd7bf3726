"""The token stream cut into lanes and BPTT windows."""

import pytest
import torch

from lstmgen.batches import batchify, check_window, get_batch, num_windows


def test_batchify_lanes_are_contiguous_and_windows_shift_by_one():
    stream = torch.arange(22, dtype=torch.uint8)
    lanes = batchify(stream, 2)
    assert lanes.tolist() == [list(range(11)), list(range(11, 22))]
    assert num_windows(lanes, 4) == 3
    x, y = get_batch(lanes, 2, 4)  # the short last window
    assert x.tolist() == [[8, 9], [19, 20]] and y.tolist() == [[9, 10], [20, 21]]
    with pytest.raises(Exception, match="too few"):
        batchify(torch.arange(3), 4)


def test_lanes_are_a_view_of_the_compact_split_and_only_a_window_is_widened():
    """A memory-mapped corpus must not be copied (8x, as int64) to train on: only the window read is."""
    stream = torch.arange(200, dtype=torch.uint8)
    lanes = batchify(stream, 4)
    assert lanes.dtype == torch.uint8 and lanes.untyped_storage().data_ptr() == stream.untyped_storage().data_ptr()
    x, y = get_batch(lanes, 0, 8)
    assert x.dtype == y.dtype == torch.long and x.shape == (4, 8)
    check_window(lanes, 0, 8, vocab_size=256)  # 256 does not fit a uint8: compared as ints, not wrapped to 0
    with pytest.raises(Exception, match="window 1 holds ids outside its vocabulary of 50"):
        check_window(lanes, 1, 8, vocab_size=50)  # lane 1 starts at id 50
