"""Reference timing worker: the R3GAN stage-1 step in PyTorch, for `bench_r3gan_compare`.

  /work/venv-19c/bin/python benchmarks/r3gan_torch_reference.py --steps 2          # standalone
  /work/venv-19c/bin/python benchmarks/r3gan_torch_reference.py --official ~/R3GAN --steps 2

Two sets of networks, one training step:

* `--official PATH` (a local checkout of the official R3GAN code, which fabgen neither ships nor
  copies): its `R3GAN.Networks.Generator` / `Discriminator`, built with the widths, cardinalities,
  blocks, expansion and noise dimension of `configs/stage1.py:r3gan_compare`.
* otherwise fabgen's OWN PyTorch implementation below, written from the paper's description (the
  same architecture as `fabgen.nn.r3gan`: normalization-free inverted-bottleneck blocks with a
  grouped 3x3 conv of group width 16, biases only in the biased activations, [1, 3, 3, 1]
  resampling with a 1x1 transition, G's 4x4 basis scaled by a linear map of z, D's stem, 4x4
  depthwise basis and linear head). It is a *same-architecture PyTorch reference*, not the
  official code; it exists only to time a PyTorch step on this CPU. Initialisation details do not
  affect the timing and are kept simple.

The step is the one fabgen's `Stage1Task` compiles: a D step (RpGAN on [real; fake] + gamma/2
(R1 + R2), the input gradients taken with `create_graph=True`, Adam), then a G step against the
updated D (RpGAN, Adam), then the EMA of G.

Run by the benchmark as a subprocess (it needs torch, fabgen's venv does not): it prints `ready`
and then, for every line `N` read on stdin, runs N steps and prints one JSON line with the wall
and process-CPU seconds, so that the two frameworks can be timed interleaved in one run.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

G_WIDTHS = (256, 256, 256, 128, 64)   # from 4x4 up (configs/stage1.py:r3gan_compare)
GROUP_WIDTH, BLOCKS, EXPANSION, NOISE, LEAK = 16, 2, 2, 64, 0.2
# `--tiny`: the same architecture shrunk (3 stages, 16x16), as `bench_r3gan_compare --tiny`
# builds on the fabgen side: for a test of the benchmark's plumbing, not a speed figure.
TINY = {"widths": (32, 32, 16), "group_width": 8, "blocks": 1, "noise": 16}


class BiasedActivation(nn.Module):
  def __init__(self, channels):
    super().__init__()
    self.bias = nn.Parameter(torch.zeros(channels))

  def forward(self, x):
    return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), LEAK)


class Block(nn.Module):
  """x + 1x1(bact(grouped 3x3(bact(1x1(x))))), convs without bias."""

  def __init__(self, width, group_width=GROUP_WIDTH):
    super().__init__()
    hidden = width * EXPANSION
    self.expand = nn.Conv2d(width, hidden, 1, bias=False)
    self.act1 = BiasedActivation(hidden)
    self.spatial = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden // group_width,
                             bias=False)
    self.act2 = BiasedActivation(hidden)
    self.project = nn.Conv2d(hidden, width, 1, bias=False)
    nn.init.zeros_(self.project.weight)

  def forward(self, x):
    return x + self.project(self.act2(self.spatial(self.act1(self.expand(x)))))


def _filter(channels):
  f = torch.tensor([1.0, 3.0, 3.0, 1.0])
  return (torch.outer(f, f) / f.sum() ** 2).expand(channels, 1, 4, 4).contiguous()


class Upsample(nn.Module):
  """2x, [1, 3, 3, 1]-filtered (transposed depthwise conv with the gain-4 filter)."""

  def __init__(self, channels):
    super().__init__()
    self.register_buffer("kernel", _filter(channels) * 4)
    self.channels = channels

  def forward(self, x):
    return F.conv_transpose2d(x, self.kernel, stride=2, padding=1, groups=self.channels)


class Downsample(nn.Module):
  def __init__(self, channels):
    super().__init__()
    self.register_buffer("kernel", _filter(channels))
    self.channels = channels

  def forward(self, x):
    return F.conv2d(x, self.kernel, stride=2, padding=1, groups=self.channels)


class Generator(nn.Module):
  def __init__(self, widths=G_WIDTHS, group_width=GROUP_WIDTH, blocks=BLOCKS, noise=NOISE):
    super().__init__()
    self.basis = nn.Parameter(torch.randn(1, widths[0], 4, 4))
    self.basis_scale = nn.Linear(noise, widths[0], bias=False)
    self.stages = nn.ModuleList()
    for i, w in enumerate(widths):
      layers = []
      if i:
        if widths[i - 1] != w:
          layers.append(nn.Conv2d(widths[i - 1], w, 1, bias=False))
        layers.append(Upsample(w))
      layers += [Block(w, group_width) for _ in range(blocks)]
      self.stages.append(nn.Sequential(*layers))
    self.head = nn.Conv2d(widths[-1], 3, 1, bias=False)

  def forward(self, z):
    h = self.basis * self.basis_scale(z)[:, :, None, None]
    for stage in self.stages:
      h = stage(h)
    return self.head(h)


class Discriminator(nn.Module):
  def __init__(self, widths=tuple(reversed(G_WIDTHS)), group_width=GROUP_WIDTH, blocks=BLOCKS):
    super().__init__()
    self.stem = nn.Conv2d(3, widths[0], 1, bias=False)
    self.stages = nn.ModuleList()
    for i, w in enumerate(widths):
      layers = []
      if i:
        layers.append(Downsample(widths[i - 1]))
        if widths[i - 1] != w:
          layers.append(nn.Conv2d(widths[i - 1], w, 1, bias=False))
      layers += [Block(w, group_width) for _ in range(blocks)]
      self.stages.append(nn.Sequential(*layers))
    self.basis = nn.Conv2d(widths[-1], widths[-1], 4, groups=widths[-1], bias=False)
    self.out = nn.Linear(widths[-1], 1, bias=False)

  def forward(self, x):
    h = self.stem(x)
    for stage in self.stages:
      h = stage(h)
    return self.out(self.basis(h).flatten(1))[:, 0]


def official_networks(path: str):
  """G and D from a local copy of the official R3GAN code (its `R3GAN/Networks.py`)."""
  sys.path.insert(0, path)
  try:
    from R3GAN import Networks  # noqa: PLC0415 (optional, user-supplied)
  except ImportError as e:
    raise SystemExit(f"--official {path!r}: cannot import R3GAN.Networks from it ({e})") from e
  widths = list(G_WIDTHS)
  cards = [EXPANSION * w // GROUP_WIDTH for w in widths]
  blocks = [BLOCKS] * len(widths)
  g = Networks.Generator(NoiseDimension=NOISE, WidthPerStage=widths, CardinalityPerStage=cards,
                         BlocksPerStage=blocks, ExpansionFactor=EXPANSION)
  d = Networks.Discriminator(WidthPerStage=widths[::-1], CardinalityPerStage=cards[::-1],
                             BlocksPerStage=blocks, ExpansionFactor=EXPANSION)
  return g, d


class Trainer:
  """RpGAN + R1 + R2 every step, Adam for both, EMA of G: the step being compared."""

  def __init__(self, g, d, batch, gamma=2.0, channels_last=False, noise=NOISE, size=64):
    self.g, self.d, self.batch, self.gamma, self.noise = g, d, batch, gamma, noise
    self.g_ema = copy.deepcopy(g).requires_grad_(False)
    self.opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.0, 0.9))
    self.opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.0, 0.9))
    self.real = torch.rand(batch, 3, size, size) * 2 - 1
    self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    self.real = self.real.contiguous(memory_format=self.memory_format)
    if channels_last:
      g.to(memory_format=torch.channels_last)
      d.to(memory_format=torch.channels_last)

  def step(self):
    b = self.batch
    # D step: RpGAN + gamma/2 (R1 + R2), the input gradients differentiated once more.
    self.d.requires_grad_(True)
    with torch.no_grad():
      fake = self.g(torch.randn(b, self.noise))
    x = torch.cat([self.real, fake]).detach().requires_grad_(True)
    logits = self.d(x)
    (grads,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    penalty = grads.square().flatten(1).sum(1)
    r1, r2 = penalty[:b].mean(), penalty[b:].mean()
    d_loss = F.softplus(logits[b:] - logits[:b]).mean() + 0.5 * self.gamma * (r1 + r2)
    self.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    self.opt_d.step()
    # G step against the updated D.
    self.d.requires_grad_(False)
    fake = self.g(torch.randn(b, self.noise))
    logits = self.d(torch.cat([self.real, fake]))
    g_loss = F.softplus(logits[:b].detach() - logits[b:]).mean()
    self.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    self.opt_g.step()
    with torch.no_grad():
      for pe, p in zip(self.g_ema.parameters(), self.g.parameters()):
        pe.lerp_(p, 1e-3)
    return float(d_loss.detach()), float(g_loss.detach())


def _run(trainer, steps):
  wall, cpu = time.perf_counter(), time.process_time()
  losses = [trainer.step() for _ in range(steps)]
  return {"steps": steps, "wall_s": time.perf_counter() - wall,
          "cpu_s": time.process_time() - cpu, "loss": losses[-1]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--official", default="", help="path of a local official R3GAN checkout")
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's)")
  parser.add_argument("--channels-last", action="store_true")
  parser.add_argument("--tiny", action="store_true", help=f"shrunk networks {TINY} (tests)")
  parser.add_argument("--steps", type=int, default=0, help=">0: run standalone, print, exit")
  parser.add_argument("--serve", action="store_true", help="read step counts on stdin")
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  if args.tiny and args.official:
    parser.error("--tiny shrinks fabgen's own reference only, not the official networks")
  if args.official:
    g, d = official_networks(args.official)
    trainer = Trainer(g, d, args.batch, channels_last=args.channels_last)
  else:
    t = TINY if args.tiny else {"widths": G_WIDTHS, "group_width": GROUP_WIDTH,
                                "blocks": BLOCKS, "noise": NOISE}
    g = Generator(t["widths"], t["group_width"], t["blocks"], t["noise"])
    d = Discriminator(tuple(reversed(t["widths"])), t["group_width"], t["blocks"])
    trainer = Trainer(g, d, args.batch, channels_last=args.channels_last, noise=t["noise"],
                      size=4 * 2 ** (len(t["widths"]) - 1))
  name = "official R3GAN networks" if args.official else "same-architecture PyTorch reference"
  info = {"implementation": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
          "g_params": sum(p.numel() for p in g.parameters()),
          "d_params": sum(p.numel() for p in d.parameters())}
  trainer.step()  # warm-up
  if args.serve:
    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
      if not line.strip():
        continue
      print(json.dumps(_run(trainer, int(line))), flush=True)
    return
  result = _run(trainer, max(args.steps, 1))
  print(json.dumps({**info, **result, "s_per_step": result["wall_s"] / result["steps"]}))


if __name__ == "__main__":
  main()
