import os

import pytest
import torch

torch.set_num_threads(int(os.environ.get("BLOBENCH_TEST_THREADS", "1")))
torch.set_default_dtype(torch.float64)


@pytest.fixture(autouse=True)
def _blobench_data_restored():
    """``blobench --data-dir`` exports BLOBENCH_DATA for its process: a test calling ``main`` in-process must not
    hand its temporary data folder to the tests after it (the real-data tests then looked in a deleted folder)."""
    saved = os.environ.get("BLOBENCH_DATA")
    yield
    if saved is None:
        os.environ.pop("BLOBENCH_DATA", None)
    else:
        os.environ["BLOBENCH_DATA"] = saved


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run a test from an empty folder so runs/ and reports/ land in tmp."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cuda():
    """The CUDA device for the tests of the CUDA paths (also marked ``gpu``): they run wherever a GPU is present
    and skip otherwise, unless BLOBENCH_REQUIRE_GPU=1 (a GPU CI job), where a missing GPU is a failure."""
    if not torch.cuda.is_available():
        if os.environ.get("BLOBENCH_REQUIRE_GPU") == "1":
            pytest.fail("BLOBENCH_REQUIRE_GPU=1 but torch.cuda.is_available() is False")
        pytest.skip("needs CUDA")
    return torch.device("cuda")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The planted-bug suite's catch rate (tests/test_planted.py), when it ran."""
    res = getattr(config, "_planted", None)
    if not res:
        return
    tried = [r for r in res if not r[1].startswith("not tried")]
    caught = [r for r in tried if r[1] == "caught"]
    terminalreporter.write_sep("=", f"planted-bug suite: caught {len(caught)}/{len(tried)}")
    for name, outcome in res:
        if outcome != "caught":
            terminalreporter.write_line(f"  {outcome}: {name}")
