"""Grouped 3x3 convolution with a per-backend, per-pass choice of formulation.

R3GAN's blocks are built around a grouped 3x3 convolution (group width 16). XLA:CPU lowers
`lax.conv_general_dilated(feature_group_count=G)` acceptably in the forward pass but pathologically
in the weight gradient (measured in issue 4: 23.6 s against 1.2 s for the *dense* conv at 32x the
FLOPs), and GAN training with R1/R2 differentiates through that gradient a second time. So:

* forward: `feature_group_count` (XLA's own kernel, the fastest forward measured on CPU);
* input gradient: a grouped conv of the output gradient with the spatially flipped,
  in/out-transposed kernel, i.e. *this same function* again, so that second derivatives (R1/R2
  gradient penalties) keep the fast path;
* weight gradient: one dot batched over groups per kernel tap, summing over B*H*W
  (`_group_weight_grad`, below; 0.80 CPU-s at the r3gan_compare 64 px shape, against 1.26-1.29
  for a group-major im2col and one dot, and 1.56 for the earlier tap-major einsum; about half
  the op's temporaries).

`"matmul"` (issue 19) goes further: every pass is one *group-major* batched matmul. The input
is transposed once to [G, B, H, W, C/G], its nine shifted views are concatenated along the
channels ([G, B*H*W, 9*C/G], contiguous, so XLA's dot needs no further transpose), and
  forward      y[g]  = P[g] @ W[g]            (batch g, K = 9*C/G),
  input grad   dx    = the same forward with the flipped, in/out-transposed kernel,
  weight grad  dW[tap][g] = shift_tap(x)[g]^T @ dy[g]   (contracting B*H*W; shared with custom),
so no pass goes through XLA:CPU's grouped-convolution emitter at all, and second derivatives
(R1/R2) differentiate dense dots, pads and slices only.

Measured per pass (`benchmarks/profile_r3gan_conv.py`, D's 64 px convs of r3gan_compare: batch
32, 128 channels, 8 groups; CPU-seconds on the shared 2-core machine), against PyTorch 2.13's
oneDNN grouped conv on the same shape (NCHW / channels-last):

  pass                         custom   matmul   torch
  forward                      0.745    1.232    0.231 / 0.170
  input grad                   0.729    1.154    } 0.665 / 0.457 with the weight grad
  weight grad                  1.290    1.363    }
  R1-style penalty (2nd order) 1.859    1.375    1.525 / 1.536

(that table predates the tap-by-tap weight gradient, which both formulations now share: the
weight-grad pass alone went from 1.26 to 0.80 CPU-s at this shape, timed jitted, best of 3, in one
process; the other rows were not re-measured.)

So matmul wins the penalty (its patches are shared between the passes) and loses the
first-order passes, which the step also runs (the G step goes through D to first order only);
summed over the step's uses the two are within a few percent, and `impl="auto"` keeps `custom`
on CPU (`CPU_DEFAULT`). Which kernel runs XLA's convolution on CPU is a process setting:
YNNPACK by default in jaxlib 0.10.2, single-threaded; `fabgen.platform.cpu_runtime` hands it back
to XLA's multi-threaded one (forward at the 64 px shape: 0.295 -> 0.188 s wall on 2 cores).
`"per_group"` (issue 19, measured 2026-12-02) splits the channels into the groups and runs one
*dense* XLA convolution per group, concatenating the outputs; plain autodiff, so every pass and
the R1/R2 second derivatives are dense convolutions. XLA:CPU's feature-grouped path spends most
of its time packing image patches (`perf record` of the r3gan_compare step: 30 % of all CPU time
in Eigen's `gemm_pack_colmajor_block` over the patch op), and per group the packing is cheap
(7 %). `benchmarks/profile_r3gan_conv.py`, CPU-seconds, best of 3, the shapes above:

  shape (b, s, c, g)   pass          custom   per_group
  (32, 64, 128, 8)     forward       0.316    0.120
                       input grad    0.350    0.122
                       weight grad   0.365    0.240
                       penalty       0.709    0.380
  (32, 32, 256, 16)    forward       0.167    0.071
                       penalty       0.364    0.182
  (32, 16, 512, 32)    forward       0.074    0.040
                       penalty       0.187    0.114

In the whole r3gan_compare step (batch 16, fabgen alone, medians of 3) the malloc decides: up to
32 groups of small convolutions, each call to oneDNN's sgemm mallocs a workspace. Under
`fabgen.platform.cpu_runtime`'s single-arena glibc tunables `_int_malloc` took 38 % of the CPU
(17.9 s/step); at glibc's defaults the step faulted its buffers afresh and ran 9.8-18.7 s/step,
and beside the PyTorch process (`benchmarks/bench_r3gan_compare.py`) 14.8-22.5. Under a preloaded
tcmalloc (`FABGEN_CPU_RUNTIME=allocator`: per-thread caches, nothing released) it runs 7.35
s/step (14.2 CPU-s, compile 56 s, 2.4 GB of temporaries; YNNPACK's convolution) against 12.3-14.1
for `custom` under the tunables, and 7.6-8.2 s/step beside PyTorch (0.72-0.83x PyTorch, from
0.45x; README, Benchmarks). So `auto` on CPU picks `per_group` when the process runs under such an
allocator (`CPU_ALLOCATOR_DEFAULT`) and `custom` otherwise (`CPU_DEFAULT`).
Plain `lax.conv_general_dilated` stays the choice on GPU/TPU (cuDNN and the
TPU compiler handle grouped convs natively); `"xla"`, `"custom"`, `"einsum"` (im2col in the
forward pass too, plain autodiff), `"matmul"` and `"per_group"` force a formulation, for
benchmarks (`benchmarks/bench_stage1.py`, `benchmarks/bench_r3gan_compare.py`) and tests.
Layout: NHWC activations, HWIO kernels with I = C_in / groups, stride 1, SAME padding.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
from einops import rearrange
from jax import lax

IMPLS = ("auto", "xla", "custom", "einsum", "matmul", "per_group")
_DN = ("NHWC", "HWIO", "NHWC")
CPU_DEFAULT = "custom"  # what impl="auto" runs on CPU under glibc's malloc (module docstring)
CPU_ALLOCATOR_DEFAULT = "per_group"  # ... and under a preloaded tcmalloc / jemalloc
# Set (to the library) in a process fabgen.platform.cpu_runtime restarted under such an allocator;
# read here rather than imported: nn and platform do not import each other.
ALLOCATOR_ENV = "FABGEN_CPU_ALLOCATOR"


def _check(x, w, groups):
  kh, kw, cin_g, cout = w.shape
  if kh % 2 == 0 or kw % 2 == 0:
    raise ValueError(f"grouped_conv needs odd kernel sizes for SAME padding, got {w.shape[:2]}")
  if x.shape[-1] != cin_g * groups or cout % groups:
    raise ValueError(f"grouped_conv: input channels {x.shape[-1]} / kernel {w.shape} do not fit "
                     f"groups={groups}")


def xla_conv(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
  """The reference: XLA's grouped convolution (stride 1, SAME)."""
  return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DN,
                                  feature_group_count=groups)


def _patches(x, kh, kw, groups):
  """im2col: [kh*kw, B, H, W, G, C/G] shifted views of the zero-padded input."""
  ph, pw = kh // 2, kw // 2
  h, w = x.shape[1], x.shape[2]
  xp = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
  cols = [xp[:, i:i + h, j:j + w] for i in range(kh) for j in range(kw)]
  return rearrange(jnp.stack(cols), "p b h w (g c) -> p b h w g c", g=groups)


def einsum_conv(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
  """Forward pass as im2col + batched einsum (dense matmuls only)."""
  kh, kw = w.shape[:2]
  cols = _patches(x, kh, kw, groups)
  wg = rearrange(w, "kh kw c (g o) -> (kh kw) g c o", g=groups)
  y = jnp.einsum("pbhwgc,pgco->bhwgo", cols, wg)
  return rearrange(y, "b h w g o -> b h w (g o)")


def _transpose_kernel(w, groups):
  """Kernel of the input gradient: spatially flipped, in/out swapped within each group."""
  wg = rearrange(w, "kh kw c (g o) -> kh kw c g o", g=groups)
  wt = rearrange(wg, "kh kw c g o -> kh kw o (g c)")
  return wt[::-1, ::-1]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def custom_conv(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
  """XLA forward; input gradient by this same op; weight gradient by im2col einsum."""
  return xla_conv(x, w, groups)


def _custom_fwd(x, w, groups):
  # `custom_conv`, not `xla_conv`: a gradient penalty differentiates this rule itself (reverse
  # over reverse), and XLA's own derivative of the conv here would be the slow weight gradient.
  return custom_conv(x, w, groups), (x, w)


def _custom_bwd(groups, res, dy):
  x, w = res
  dx = custom_conv(dy, _transpose_kernel(w, groups), groups)
  dw = _group_weight_grad(x, dy, w.shape[0], w.shape[1], groups)
  return dx.astype(x.dtype), dw.astype(w.dtype)


custom_conv.defvjp(_custom_fwd, _custom_bwd)


def _group_patches(x, kh, kw, groups):
  """Group-major im2col: [G, B*H*W, kh*kw*C/G], taps outer and channels inner on the last axis."""
  b, h, w, _ = x.shape
  xg = rearrange(x, "b h w (g c) -> g b h w c", g=groups)
  ph, pw = kh // 2, kw // 2
  xp = jnp.pad(xg, ((0, 0), (0, 0), (ph, ph), (pw, pw), (0, 0)))
  cols = jnp.concatenate([xp[:, :, i:i + h, j:j + w] for i in range(kh) for j in range(kw)], -1)
  return cols.reshape(groups, b * h * w, -1)


def _group_kernel(w, groups):
  """HWIO kernel -> [G, kh*kw*C/G, O/G], rows in the order of `_group_patches`."""
  return rearrange(w, "kh kw c (g o) -> g (kh kw c) o", g=groups)


def _matmul_forward(x, w, groups):
  b, h, wd, _ = x.shape
  cols = _group_patches(x, w.shape[0], w.shape[1], groups)
  y = lax.dot_general(cols, _group_kernel(w, groups), (((2,), (1,)), ((0,), (0,))))
  return rearrange(y.reshape(groups, b, h, wd, -1), "g b h w o -> b h w (g o)")


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul_conv(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
  """Every pass a group-major batched matmul (module docstring); exact to rounding."""
  return _matmul_forward(x, w, groups)


def _matmul_fwd(x, w, groups):
  return matmul_conv(x, w, groups), (x, w)


def _matmul_bwd(groups, res, dy):
  x, w = res
  kh, kw = w.shape[:2]
  # Input gradient: this op again (so a gradient penalty's second derivative stays dense).
  dx = matmul_conv(dy, _transpose_kernel(w, groups), groups)
  dw = _group_weight_grad(x, dy, kh, kw, groups)
  return dx.astype(x.dtype), dw.astype(w.dtype)


def _group_weight_grad(x, dy, kh, kw, groups):
  """dL/dw one tap at a time: dW[tap][g] = shift_tap(x)[g]^T @ dy[g], contracting B*H*W.

  Tap by tap rather than through the 9x im2col of `_group_patches`: each shifted view lives only
  for its own dot, so the op's temporaries halve (1275 -> 675 MB at the shape below; in the whole
  r3gan_compare step at batch 2 only 0.863 -> 0.830 GB, whose peak is the R1/R2 double
  backward's residuals, not these patches), and it is faster on CPU (D's 64 px shape, batch 32,
  128 ch, 8 groups: 0.80 CPU-s against 1.26 for the im2col dot; 32 px, batch 32, 256 ch,
  16 groups: 0.34 against 0.68; both jitted, best of 3). The input is made group-major once and
  each tap is a slice of it: nine transposes of the input cost up to a third of the step
  (`benchmarks/profile_r3gan_step.py`); one transpose and nine slices: 0.254 -> 0.198 s wall at
  the 64 px shape, 0.067 -> 0.054 at 16 px (2 threads, best of 3).
  """
  b, h, w, _ = x.shape
  ph, pw = kh // 2, kw // 2
  xg = rearrange(x, "b h w (g c) -> g b h w c", g=groups)
  xp = jnp.pad(xg, ((0, 0), (0, 0), (ph, ph), (pw, pw), (0, 0)))
  dyg = rearrange(dy, "b h w (g o) -> g (b h w) o", g=groups)
  taps = []
  for i in range(kh):
    for j in range(kw):
      xs = xp[:, :, i:i + h, j:j + w].reshape(groups, b * h * w, -1)
      taps.append(lax.dot_general(xs, dyg, (((1,), (1,)), ((0,), (0,)))))  # [G, C/G, O/G]
  return rearrange(jnp.stack(taps), "(kh kw) g c o -> kh kw c (g o)", kh=kh, kw=kw)


matmul_conv.defvjp(_matmul_fwd, _matmul_bwd)


def per_group_conv(x: jax.Array, w: jax.Array, groups: int) -> jax.Array:
  """One dense XLA convolution per group on its channel slice, concatenated; plain autodiff.

  Every pass (input and weight gradients, and the R1/R2 second derivatives) is then a *dense*
  convolution, which XLA:CPU runs well, instead of its feature-grouped path.
  """
  xs, ws = jnp.split(x, groups, axis=-1), jnp.split(w, groups, axis=-1)
  return jnp.concatenate([xla_conv(xg, wg, 1) for xg, wg in zip(xs, ws)], axis=-1)


def default_impl(backend: str | None = None) -> str:
  """The formulation `impl="auto"` picks on `backend` (default: JAX's default backend)."""
  backend = backend or jax.default_backend()
  if backend != "cpu":
    return "xla"
  return CPU_ALLOCATOR_DEFAULT if os.environ.get(ALLOCATOR_ENV) else CPU_DEFAULT


def grouped_conv(x: jax.Array, w: jax.Array, groups: int, impl: str = "auto") -> jax.Array:
  """Grouped convolution, NHWC x HWIO (I = C_in/groups), stride 1, SAME padding.

  Dense convs (groups == 1) always go to XLA: only the grouped weight gradient is pathological.
  """
  _check(x, w, groups)
  if impl == "auto":
    impl = default_impl()
  if groups == 1 or impl == "xla":
    return xla_conv(x, w, groups)
  if impl == "custom":
    return custom_conv(x, w, groups)
  if impl == "einsum":
    return einsum_conv(x, w, groups)
  if impl == "matmul":
    return matmul_conv(x, w, groups)
  if impl == "per_group":
    return per_group_conv(x, w, groups)
  raise ValueError(f"grouped_conv impl={impl!r} is not one of {IMPLS}")
