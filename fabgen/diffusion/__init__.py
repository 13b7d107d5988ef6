"""Latent inpainting diffusion (SD-2-inpainting compatible) and the DefectFill fine-tune.

Modules are native Flax NNX with attribute names that map one-to-one to diffusers/transformers
keys (`loader.py`), so a local SD-2-inpainting folder loads into them; tiny sizes train on CPU.
"""
