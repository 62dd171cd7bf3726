"""Fixtures of the CLI tests."""

import pytest

from .runner import TINY, ok


@pytest.fixture
def trained(jokes_csv):
    ok("prepare", jokes_csv, "--name", "toy", "--val-frac", "0.1", "--test-frac", "0.1")
    ok("train", "-c", "char", "--corpus", "toy", "--name", "tiny", "--quiet", *TINY)
