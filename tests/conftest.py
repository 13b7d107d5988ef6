"""Test-wide set-up: eight forced host devices, so every multi-device test can run on a CPU.

The flag must be set before JAX initialises its backends, hence here, before any test imports jax.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# The CPU process settings `fabgen` starts with (fabgen/platform/cpu_runtime.py: glibc malloc
# tunables, XLA:CPU flags) are a speed choice for long training runs; the test suite, mostly
# compiles of tiny programs, ran slower under them (20 min 18 s against 18 min 52 s; one malloc
# arena slows XLA's multi-threaded compiler), so tests and the CLI processes they start keep the
# defaults.
# tests/platform/test_cpu_runtime.py tests the settings themselves.
os.environ.setdefault("FABGEN_CPU_RUNTIME", "default")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent XLA compilation cache for the whole run, shared by the xdist workers and the
# subprocesses tests start (they inherit the environment): FabricSim's renderer, the tiny models'
# init and step programs compile once per suite instead of once per test file. Programs with host
# callbacks are never cached, so those tests still compile for real. FABGEN_TEST_JAX_CACHE=""
# turns it off (e.g. to time compilation).
_CACHE = os.environ.setdefault(
    "FABGEN_TEST_JAX_CACHE",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache_tests"))
if _CACHE:
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture(autouse=True, scope="session")
def _fabgen_cache(tmp_path_factory):
  """Texture networks a test trains (`train:configs/texture.py:...` condition specs) go to one
  cache per test session (per xdist worker), not to the user's ~/.cache/fabgen: tests stay
  hermetic, and a session's tests share one trained network."""
  mp = pytest.MonkeyPatch()
  mp.setenv("FABGEN_CACHE", str(tmp_path_factory.mktemp("fabgen_cache")))
  yield
  mp.undo()
