import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("BLOBENCH_TEST_THREADS", "1")))
torch.set_default_dtype(torch.float64)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run a test from an empty folder so runs/ and reports/ land in tmp."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
