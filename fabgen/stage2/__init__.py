"""Stage 2 and the single-stage alternative, both painting a defect into real fabric.

* the fusion task (`fusion_task.FusionTask`, task "fusion"): the paper's fusion network T turns a
  pasted stage-1 defect into a seamless one (`fusion.py` networks, `data.py` imperfect inputs,
  `losses.py` seam weights);
* the inpainter (`inpainter_task.InpainterTask`, task and synthesis method "inpainter"): one
  R3GAN generator that paints the defect and its seam in place (`inpainter.py`).

Both train through `fabgen.gan.step.update`; `config_checks.py` validates their configs.
"""
