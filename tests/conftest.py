import os

import pytest

os.environ.setdefault("CLOSEDLOOP_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "closedloop-tests"))


def pytest_collection_modifyitems(config, items):
    """Fast tests first, the slow end-to-end ones last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)
