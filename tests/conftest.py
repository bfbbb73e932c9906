from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Teacher-output caches of the tests go to a temporary directory, never the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MOBCLF_CACHE", str(tmp_path_factory.mktemp("mobclf-cache")))
    yield
    mp.undo()
