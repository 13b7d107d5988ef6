"""The training platform every model trains through: mesh, sharding, jit, checkpoints, metrics."""
