"""The open-set protocol behind `fabgen openset`: known classes train, held-out classes test.

`protocol.run_openset(config, workdir)` trains DGT (G + DIS + DFC, `fabgen.dgt`) once per split
of FabricSim's six classes into known and unknown, then scores the DFC open-set classifier
(OpenMax over Weibull fits) against a softmax-threshold baseline and the DIS segmenter's pixel
maps on a test set holding every class. `metrics.py` has the scores.
"""
