"""Test-wide set-up: eight forced host devices, so every multi-device test can run on a CPU.

The flag must be set before JAX initialises its backends, hence here, before any test imports jax.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
