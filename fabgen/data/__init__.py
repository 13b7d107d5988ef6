"""Input layer: the FabricSim generator, readers for real data sets on disk, and grain pipelines."""
