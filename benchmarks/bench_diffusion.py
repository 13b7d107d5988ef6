"""Latent inpainting diffusion: train-step images/s + MFU (pre-training or DefectFill LoRA step),
DDIM inpainting sampling (images/s, time and FLOPs per guided step), `synthesize --method
defectfill` images/s, and ahead-of-time compiles at SD-2 size (memory per device).

  python -m benchmarks.bench_diffusion --variant tiny [--task diffusion|defectfill] [--steps 5]
  python -m benchmarks.bench_diffusion --variant tiny --task defectfill --steps 0 \
      --sample-steps 50 --synth-num 8 --synth-size 64          # sampling + synthesis only
  XLA_FLAGS=--xla_force_host_platform_device_count=16 python -m benchmarks.bench_diffusion \
      --variant sd2 --compile-only --mesh data=4,fsdp=4 --batch 16   # SD-2 memory per device
  python -m benchmarks.bench_diffusion --variant sd2 --task defectfill --batch 4 \
      --sample-steps 50 --json out/bench_diffusion_sd2.json     # on an accelerator

The batch is synthetic (random crops with square masks): the figure is compute, not input.
Weights are random (init_state): throughput does not depend on them. Sampling FLOPs are the
U-Net's (XLA cost analysis of one guided step x steps); VAE encode/decode are outside them.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from fabgen.diffusion import sampling
from fabgen.diffusion import schedulers
from fabgen.diffusion import unet as unet_lib
from fabgen.platform import aot
from fabgen.platform import config as config_lib

SMALL_ARGS = ["--variant", "tiny", "--steps", "3", "--sample-steps", "10"]


def synthetic_batch(batch: int, size: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  masks = np.zeros((batch, size, size), np.float32)
  masks[:, size // 4: size // 2, size // 3: size // 2] = 1.0
  return {"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8), "mask": masks,
          "class_id": np.full((batch,), 2, np.int32)}


def _sampling_inputs(task, state):
  """(model, params, v_star, cond ids, uncond ids) of either task's state."""
  if "train" in state:
    model, params, v_star = task.inference_params(state)
    return model, params, v_star, jnp.asarray(task.obj_ids), jnp.asarray(task.uncond_ids)
  return (task.model, state["params"], None, jnp.asarray(task.prompt_ids[2]),
          jnp.asarray(task.prompt_ids[-1]))


def _timed(fn, *args, repeats: int):
  """(compile s, seconds per call) of jit(fn) on args; per-call time after one warm call."""
  t = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_s = time.perf_counter() - t
  jax.block_until_ready(compiled(*args))
  t = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(compiled(*args))
  return compiled, compile_s, (time.perf_counter() - t) / repeats


def _guided_step(model, cond, uncond, image_shape, steps: int, guidance: float):
  """(prompt ids [2B, N], latent shape, fn(params, x, ctx, t)): the sampler's scan body, one
  guided U-Net pass over batch 2B and the DDIM update, as a program of its own."""
  b, h, w = image_shape[:3]
  f = model.downsample
  lat = (b, h // f, w // f, model.latent_channels)
  ids = jnp.concatenate([jnp.broadcast_to(uncond, (b, uncond.shape[-1])),
                         jnp.broadcast_to(cond, (b, cond.shape[-1]))])

  def one_step(p, x, ctx, t):
    inp = unet_lib.inpaint_input(x, jnp.zeros(lat[:3] + (1,)), jnp.zeros(lat))
    out, _ = model.eps(p["unet"], jnp.concatenate([inp, inp]), t, ctx)
    return schedulers.ddim_step(model.schedule, schedulers.guided(out[:b], out[b:], guidance), t,
                                x, steps)

  return ids, lat, one_step


def compile_sampling_step(task, batch: int, steps: int = 50, guidance: float = 7.5):
  """Ahead-of-time compile of one guided DDIM step for `batch` images on one device, from
  abstract shapes (nothing allocated): memory (compiled.memory_analysis) and FLOPs per image."""
  abstract = jax.eval_shape(task.init_state, jax.random.key(0))
  if "train" in abstract:   # DefectFill: LoRA merged into the kernels, as synthesis runs it
    model = task.base_model()
    params, v_star = jax.eval_shape(lambda st: task.inference_params(st)[1:], abstract)
    cond, uncond = jnp.asarray(task.obj_ids), jnp.asarray(task.uncond_ids)
  else:
    model, params, v_star, cond, uncond = _sampling_inputs(task, abstract)
  s = int(task.config.data.image_size)
  ids, lat, one_step = _guided_step(model, cond, uncond, (batch, s, s), steps, guidance)
  ctx = jax.eval_shape(lambda p, v: model.text(p["text"], ids, v), params, v_star)
  t = time.perf_counter()
  compiled = jax.jit(one_step).lower(params, jax.ShapeDtypeStruct(lat, jnp.float32), ctx,
                                     jax.ShapeDtypeStruct((), jnp.int32)).compile()
  flops = aot.flops(compiled)
  return {"sample_step_compile_s": time.perf_counter() - t, "sample_step_batch": batch,
          "sample_step_memory": aot.memory(compiled),
          "sample_step_gflops_per_image": flops / batch / 1e9 if flops else None,
          "sample_gflops_per_image": flops * steps / batch / 1e9 if flops else None,
          "sample_steps": steps}


def lowered_flops(config, task, batch, sample_batch: int, steps: int = 50,
                  guidance: float = 7.5):
  """FLOPs per image of the train step and of one guided sampling step from the lowered
  (not compiled) programs on one device: XLA's cost analysis of the HLO, in CPU-seconds where a
  compile of the SD-2 step takes CPU-hours."""
  from fabgen.platform import trainer  # pylint: disable=g-import-not-at-top
  _, step_rng, abstract = trainer.abstract_state(task, config)
  spec = lambda v: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype)
  t = time.perf_counter()
  train = jax.jit(task.train_step).lower(abstract, {k: spec(v) for k, v in batch.items()},
                                         jax.ShapeDtypeStruct(step_rng.shape, step_rng.dtype))
  out = {"train_lower_s": time.perf_counter() - t,
         "train_gflops_per_image": aot.flops(train) / config.batch_size / 1e9
         if aot.flops(train) else None}
  if "train" in abstract:
    model = task.base_model()
    params, v_star = jax.eval_shape(lambda st: task.inference_params(st)[1:], abstract)
    cond, uncond = jnp.asarray(task.obj_ids), jnp.asarray(task.uncond_ids)
  else:
    model, params, v_star, cond, uncond = _sampling_inputs(task, abstract)
  size = int(config.data.image_size)
  ids, lat, one_step = _guided_step(model, cond, uncond, (sample_batch, size, size), steps,
                                    guidance)
  ctx = jax.eval_shape(lambda p, v: model.text(p["text"], ids, v), params, v_star)
  sample = jax.jit(one_step).lower(params, jax.ShapeDtypeStruct(lat, jnp.float32), ctx,
                                   jax.ShapeDtypeStruct((), jnp.int32))
  f = aot.flops(sample)
  out.update({"sample_step_gflops_per_image": f / sample_batch / 1e9 if f else None,
              "sample_gflops_per_image": f * steps / sample_batch / 1e9 if f else None,
              "sample_steps": steps})
  return out


def bench_sampling(task, state, batch, steps: int, guidance: float = 7.5, repeats: int = 2):
  """DDIM inpainting: images/s of the whole `steps`-step sampler (encode, scan of guided U-Net
  steps, decode, paste-back), and one guided step alone (time and XLA FLOPs: a scan's cost
  analysis counts its body once, so FLOPs come from the step program)."""
  model, params, v_star, cond, uncond = _sampling_inputs(task, state)
  images = jnp.asarray(batch["image"], jnp.float32) / 127.5 - 1.0
  masks = jnp.asarray(batch["mask"])
  b = images.shape[0]
  whole = lambda p, k: sampling.inpaint(model, p, v_star, images, masks, cond[None],
                                        uncond[None], k, steps, guidance)
  _, compile_s, per_call = _timed(whole, params, jax.random.key(1), repeats=repeats)

  ids, lat, one_step = _guided_step(model, cond, uncond, images.shape, steps, guidance)
  ctx = jax.jit(lambda p: model.text(p["text"], ids, v_star))(params)
  compiled, _, step_s = _timed(one_step, params, jnp.zeros(lat), ctx, jnp.asarray(501),
                               repeats=max(repeats, 3))
  step_flops = aot.flops(compiled)
  return {"sample_steps": steps, "sample_batch": b, "sample_guidance": guidance,
          "sample_compile_s": compile_s, "sample_s_per_batch": per_call,
          "sample_images_per_s": b / per_call, "sample_step_ms": step_s * 1e3,
          "sample_step_gflops": step_flops / 1e9 if step_flops else None,
          "sample_gflops_per_image": (step_flops * steps / b / 1e9) if step_flops else None}


def bench_synthesis(task, state, num: int, batch: int, size: int):
  """End-to-end `fabgen synthesize --method defectfill` images/s (K candidates per defect,
  Low-Fidelity Selection, labelling, PNG writing) on procedural `size`-px backgrounds; the mask
  bank holds the synthetic square masks (random weights: throughput does not depend on them)."""
  import tempfile  # pylint: disable=g-import-not-at-top
  from benchmarks import bench_synthesis as bs  # pylint: disable=g-import-not-at-top
  from fabgen.synthesis import backgrounds as backgrounds_lib  # pylint: disable=g-import-not-at-top
  from fabgen.synthesis.defectfill import DefectFillSynthesizer  # pylint: disable=g-import-not-at-top
  s = int(task.config.data.image_size)
  bank = synthetic_batch(state["mask_bank"].shape[0], s)["mask"]
  synth = DefectFillSynthesizer(task, {**state, "mask_bank": jnp.asarray(bank)})
  bgs = backgrounds_lib.open_backgrounds([r["image"] for r in bs._procedural(8, size, 1, False)])  # pylint: disable=protected-access
  with tempfile.TemporaryDirectory() as tmp:
    ips = bs.time_method(synth, bgs, num, batch, tmp)
  return {"synth_images_per_s": ips, "synth_num": num, "synth_batch": batch,
          "synth_size": size, "synth_steps": synth.steps, "synth_candidates": synth.candidates}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="tiny")
  parser.add_argument("--task", default="diffusion", choices=("diffusion", "defectfill"))
  parser.add_argument("--steps", type=int, default=5, help="timed train steps; 0 = no train "
                      "benchmark")
  parser.add_argument("--batch", type=int, default=0)
  parser.add_argument("--sample-steps", type=int, default=50, help="0 = no sampling benchmark")
  parser.add_argument("--sample-batch", type=int, default=4)
  parser.add_argument("--synth-num", type=int, default=0,
                      help="defectfill only: time `synthesize` of this many images (0 = no)")
  parser.add_argument("--synth-size", type=int, default=64, help="synthesis background side")
  parser.add_argument("--mesh", default="")
  parser.add_argument("--remat", action="store_true")
  parser.add_argument("--compile-only", action="store_true",
                      help="AOT-compile the train step for --mesh (memory per device) and, "
                      "with --sample-steps, one guided sampling step of --sample-batch images")
  parser.add_argument("--flops-only", action="store_true",
                      help="FLOPs per image of the train and sampling steps from the lowered "
                      "programs (no compile, one device)")
  parser.add_argument("--json", default=None)
  parser.add_argument("--precision", default="", choices=("", "float32", "bfloat16"),
                      help="precision.compute_dtype (default: the config's)")
  args = parser.parse_args(argv)
  name = "diffusion" if args.task == "diffusion" else "defectfill"
  opts = f"{args.variant},remat={args.remat}" + (f",batch={args.batch}" if args.batch else "")
  config = config_lib.load_config(f"configs/{name}.py:{opts}")
  if args.mesh:
    config_lib.apply_overrides(config, [f"mesh.{kv}" for kv in args.mesh.split(",")])
  if args.precision:
    config.precision.compute_dtype = args.precision
  batch = synthetic_batch(config.batch_size, int(config.data.image_size))
  from fabgen.platform import registry  # pylint: disable=g-import-not-at-top
  task = registry.build_task(config)
  if args.flops_only:
    result = lowered_flops(config, task, batch, args.sample_batch, args.sample_steps or 50)
    print(result)
    _write(args.json, result)
    return result
  if args.compile_only:
    result = {}
    if args.steps:
      result.update(harness.aot_compile(config, task=task, batch=batch))
      print("train step:", result)
    if args.sample_steps:
      sample = compile_sampling_step(task, args.sample_batch, args.sample_steps)
      print("sampling step:", sample)
      result.update(sample)
    _write(args.json, result)
    return result
  result = {}
  if args.steps:
    result = harness.benchmark_task(config, steps=args.steps, batch=batch, task=task,
                                    json_path=None, label=f"{name}:{args.variant}")
  if args.sample_steps or args.synth_num:
    # Eager init: a jitted init compiles for minutes on a CPU (hundreds of key draws).
    state = task.init_state(jax.random.key(0))
  if args.sample_steps:
    small = synthetic_batch(args.sample_batch, int(config.data.image_size))
    result.update(bench_sampling(task, state, small, args.sample_steps))
    print(f"sampling: {args.sample_steps} DDIM steps, guidance 7.5, batch {args.sample_batch}: "
          f"{result['sample_images_per_s']:.3f} images/s, {result['sample_step_ms']:.1f} ms per "
          f"guided step, {result['sample_gflops_per_image']:.3f} GFLOP per image (compile "
          f"{result['sample_compile_s']:.1f} s)")
  if args.synth_num:
    if name != "defectfill":
      raise SystemExit("--synth-num needs --task defectfill (synthesis runs a fine-tune)")
    result.update(bench_synthesis(task, state, args.synth_num, args.sample_batch,
                                  args.synth_size))
    print(f"synthesize --method defectfill: {result['synth_images_per_s']:.3f} images/s "
          f"({args.synth_size}px backgrounds, {result['synth_candidates']} candidates x "
          f"{result['synth_steps']} DDIM steps per defect)")
  _write(args.json, result)
  return result


def _write(path, result):
  if path:
    import json  # pylint: disable=g-import-not-at-top
    import os  # pylint: disable=g-import-not-at-top
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2, default=str)
if __name__ == "__main__":
  from fabgen.platform import cpu_runtime  # pylint: disable=g-import-not-at-top
  cpu_runtime.start()  # the CPU process settings fabgen runs under (README, Training at scale)
  main()
