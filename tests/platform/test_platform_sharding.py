"""Sharding rules, mixed precision, the benchmark harness, AOT compile and sweep expansion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from benchmarks import harness
from configs import reference
from fabgen.platform import aot
from fabgen.platform import mesh as mesh_lib
from fabgen.platform import reference_task
from fabgen.platform import sharding as sharding_lib
from launch import sweep


def _abstract():
  return {"step": jax.ShapeDtypeStruct((), jnp.int32),
          "params": {"conv": {"kernel": jax.ShapeDtypeStruct((3, 3, 8, 64), jnp.float32),
                              "bias": jax.ShapeDtypeStruct((64,), jnp.float32)},
                     "head": {"kernel": jax.ShapeDtypeStruct((64, 6), jnp.float32)}}}


def test_rules_tactics_logical_names_and_fsdp_default():
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  specs = sharding_lib.state_specs(
      _abstract(), mesh, rules=[(r"head/kernel", ("embed", None)), (r"bias$", "replicate")],
      logical_axis_rules=[("embed", "fsdp")], fsdp_min_size=100)
  assert specs["step"] == P()
  assert specs["params"]["conv"]["kernel"] == P(None, None, None, "fsdp")  # largest dim
  assert specs["params"]["conv"]["bias"] == P()
  assert specs["params"]["head"]["kernel"] == P("fsdp", None)


def test_rule_errors_name_the_parameter():
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 1, "tensor": 4})
  with pytest.raises(ValueError, match=r"params/head/kernel dim 6 is not divisible"):
    sharding_lib.state_specs(_abstract(), mesh, rules=[("head", (None, "tensor"))])
  with pytest.raises(ValueError, match=r"'widht' is neither a mesh axis"):
    sharding_lib.state_specs(_abstract(), mesh, rules=[("head", ("widht", None))])


def test_bf16_policy_keeps_params_and_optimizer_state_f32():
  config = reference.get_config("tiny")
  config.precision.compute_dtype = "bfloat16"
  task = reference_task.ReferenceTask(config)
  state = task.init_state(jax.random.key(0))
  batch = next(iter(task.dataset(0, 1, 0)))
  logits = task.apply(state["params"], jnp.asarray(batch["image"]))
  assert logits.dtype == jnp.float32
  new_state, metrics = jax.jit(task.train_step)(state, batch, jax.random.key(0))
  floats = [x for x in jax.tree.leaves((new_state["params"], new_state["opt"]))
            if jnp.issubdtype(x.dtype, jnp.floating)]
  assert floats and all(x.dtype == jnp.float32 for x in floats)
  assert np.isfinite(float(metrics["loss"]))
  # bf16 compute changes the logits only at bf16 resolution.
  f32 = reference_task.ReferenceTask(reference.get_config("tiny"))
  np.testing.assert_allclose(logits, f32.apply(state["params"], jnp.asarray(batch["image"])),
                             atol=0.05)
  # The program really computes in bf16 when asked, and only then: every convolution and matmul
  # of the lowered train step takes bf16 operands under the policy, none does under f32. (The
  # checks above pass if compute_dtype were ignored.)
  for task_, want_bf16 in ((task, True), (f32, False)):
    text = jax.jit(task_.train_step).lower(state, batch, jax.random.key(0)).as_text()
    ops = [l for l in text.splitlines()
           if "stablehlo.convolution" in l or "stablehlo.dot_general" in l]
    assert ops, "no convolution or matmul in the lowered step"
    with_bf16 = [("bf16" in l.split(" : ")[-1]) for l in ops]
    assert all(with_bf16) if want_bf16 else not any(with_bf16), (want_bf16, ops[:3])


def test_harness_reports_and_aot_memory_shrinks_with_fsdp(tmp_path):
  config = reference.get_config("tiny")
  config.mesh.data = 2
  result = harness.benchmark_task(config, steps=2, warmup=1, devices=jax.devices()[:2],
                                  json_path=str(tmp_path / "b.json"), quiet=True)
  assert result["step_ms"] > 0 and result["images_per_s"] > 0
  assert result["flops_per_step"] > 0 and 0 < result["mfu"]
  assert result["memory"]["argument_size_in_bytes"] > 0
  assert (tmp_path / "b.json").exists()

  config = reference.get_config("tiny")
  config.fsdp_min_size = 64
  replicated = aot.aot_compile(config, {"data": 4, "fsdp": 1}, devices=jax.devices()[:4])
  sharded = aot.aot_compile(config, {"data": 1, "fsdp": 4}, devices=jax.devices()[:4])
  assert replicated["state_bytes_total"] == sharded["state_bytes_total"]
  assert (sharded["memory"]["argument_size_in_bytes"]
          < replicated["memory"]["argument_size_in_bytes"])


def test_sweep_expands_the_grid():
  commands = sweep.expand("configs/reference.py:tiny", "/tmp/sw", ["--config.total_steps=3"])
  assert len(commands) == 4
  flat = [" ".join(c) for c in commands]
  assert sum("--config.optim.lr=0.001" in c for c in flat) == 2
  assert all(c.endswith("--config.total_steps=3") for c in flat)
  assert len({c[c.index("--workdir") + 1] for c in commands}) == 4


def test_constrain_shards_activations_under_the_mesh_and_is_a_noop_outside():
  x = jnp.ones((8, 4, 4, 6))
  assert sharding_lib.constrain(x, "batch", None, None, "channels") is x
  mesh = mesh_lib.make_mesh({"data": 4, "fsdp": 2, "tensor": 1})
  rules = [("batch", ("data", "fsdp")), ("channels", "tensor")]
  with jax.set_mesh(mesh):
    y = jax.jit(lambda a: sharding_lib.constrain(a * 2, "batch", None, None, "channels",
                                                 logical_axis_rules=rules))(x)
  assert y.sharding.spec[0] == ("data", "fsdp")  # tensor has size 1: channels stay whole
  assert y.addressable_shards[0].data.shape == (1, 4, 4, 6)
  np.testing.assert_allclose(y, 2.0)


def test_cli_compile_and_train_report_bad_input(capsys, tmp_path):
  from fabgen.cli import main as cli  # pylint: disable=g-import-not-at-top
  rc = cli.main(["compile", "--config", "configs/reference.py:tiny", "--mesh", "data=2,fsdp=2",
                 "--json", str(tmp_path / "aot.json"), "--config.fsdp_min_size=64"])
  out = capsys.readouterr().out
  assert rc == 0 and "total_bytes_per_device" in out and (tmp_path / "aot.json").exists()
  rc = cli.main(["train", "--config", "configs/reference.py:tiny", "--workdir", str(tmp_path),
                 "--config.optim.lrr=1"])
  assert rc == 2 and "'lrr'" in capsys.readouterr().err
  rc = cli.main(["compile", "--config", "configs/reference.py:tiny", "--mesh", "data=64"])
  assert rc == 2 and "needs 64 devices" in capsys.readouterr().err
