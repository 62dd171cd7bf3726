"""Device and precision picking."""

import pytest
import torch

from lstmgen.device import cpu_bf16_lstm_works, pick_precision
from lstmgen.errors import LstmgenError


def test_bf16_request_is_checked_against_the_hardware():
    cpu = torch.device("cpu")
    assert pick_precision("fp32", cpu) == "fp32"
    if cpu_bf16_lstm_works():
        assert pick_precision("auto", cpu) == "bf16"
    else:
        assert pick_precision("auto", cpu) == "fp32"
        with pytest.raises(LstmgenError, match="bf16 is not supported"):
            pick_precision("bf16", cpu)
