"""DGT: open-set defect generation and transfer (IEEE TIM 2025), with its DIS and DFC modules.

No public code exists; this package is built from the research note
(`reference/seed-notes.md`, DGT section). Where the note is ambiguous the module docstrings say
which reading was chosen and why.

  encoding.py   label encodings E_fore / E_back times the mask, stochastic Gaussian smoothing
  networks.py   the generator G (encoder-decoder with skips), DIS (U-Net: reconstruct, then
                segment from the comparison) and the DFC classifier
  losses.py     L_fore / L_back / L_mix (masked or literal reading), segmentation and
                classification losses
  weibull.py    maximum-likelihood Weibull fit and CDF (checked against scipy)
  openmax.py    DFC's open-set layer: per-class Weibull models of distances to class means
  data.py       exactly aligned (N, D, M, class) quadruples from FabricSim
  task.py       `DGTTask`: the three networks trained together through `fabgen.platform`

Layering: imports fabgen.platform, fabgen.nn, fabgen.data and fabgen.gan only. Synthesis
(`fabgen.synthesis.dgt`) and the open-set protocol (`fabgen.openset`) sit above it.
"""
