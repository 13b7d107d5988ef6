"""Session-wide test settings.

Texture networks a test trains (`train:configs/texture.py:...` condition specs) go to one cache
per test session, not to the user's `~/.cache/fabgen`: tests stay hermetic, and the tests of a
session (of one xdist worker) share one trained network.
"""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _fabgen_cache(tmp_path_factory):
  mp = pytest.MonkeyPatch()
  mp.setenv("FABGEN_CACHE", str(tmp_path_factory.mktemp("fabgen_cache")))
  yield
  mp.undo()
