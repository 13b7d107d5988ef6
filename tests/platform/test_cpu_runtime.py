"""The CPU run's process settings: what is set, when, what the user set is kept, and that it works."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from fabgen.nn import grouped_conv
from fabgen.platform import cpu_runtime

# conftest opts the suite out (FABGEN_CPU_RUNTIME=default); would this host get the settings?
APPLIES = platform.libc_ver()[0] == "glibc" and cpu_runtime.applies({})
TESTED_JAXLIB = cpu_runtime.XLA_FLAGS_TESTED_ON[0]


def _tunables(env):
  return dict(item.split("=", 1) for item in env["GLIBC_TUNABLES"].split(":"))


def _wanted(environ, libc="glibc", accelerator=False, jaxlib=TESTED_JAXLIB, allocator=None):
  return cpu_runtime.wanted_environment(environ, libc=libc, accelerator=accelerator, jaxlib=jaxlib,
                                        allocator=allocator)


def test_a_plain_cpu_host_gets_every_setting():
  env = _wanted({"PATH": "/bin"})
  assert _tunables(env) == cpu_runtime.TUNABLES
  assert env["XLA_FLAGS"] == f"{cpu_runtime.YNN_FLAG}=-individual_convolution"
  assert env["PATH"] == "/bin"


def test_what_the_user_set_is_kept_and_the_rest_added():
  user = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4:glibc.pthread.rseq=0",
          "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  env = _wanted(user)
  tunables = _tunables(env)
  assert tunables["glibc.malloc.arena_max"] == "4"
  assert tunables["glibc.pthread.rseq"] == "0"
  assert tunables["glibc.malloc.mmap_max"] == "0"
  assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8",
                                      f"{cpu_runtime.YNN_FLAG}=-individual_convolution"]
  own = {"XLA_FLAGS": f"{cpu_runtime.YNN_FLAG}=individual_dot"}
  assert _wanted(own)["XLA_FLAGS"] == own["XLA_FLAGS"]


def test_flags_mode_sets_the_xla_flag_without_the_malloc_tunables():
  env = _wanted({"FABGEN_CPU_RUNTIME": "flags", "GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
  assert env["GLIBC_TUNABLES"] == "glibc.pthread.rseq=0"  # the user's, nothing added
  assert env["XLA_FLAGS"] == f"{cpu_runtime.YNN_FLAG}=-individual_convolution"
  assert "GLIBC_TUNABLES" not in _wanted({"FABGEN_CPU_RUNTIME": "flags"})


def test_applying_twice_changes_nothing():
  once = _wanted({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"})
  assert _wanted(once) == once


@pytest.mark.parametrize("environ, accelerator", [
    ({"FABGEN_CPU_RUNTIME": "default"}, False),  # opted out
    ({}, True),  # a GPU/TPU host
    ({"JAX_PLATFORMS": "cuda"}, False),
])
def test_leaves_a_non_cpu_or_opted_out_process_alone(environ, accelerator):
  assert _wanted(environ, accelerator=accelerator) == environ


def test_each_setting_only_where_it_is_known():
  no_glibc = _wanted({}, libc="")  # musl, macOS: no tunables, the XLA flag still
  assert "GLIBC_TUNABLES" not in no_glibc and "XLA_FLAGS" in no_glibc
  other_jaxlib = _wanted({}, jaxlib="99.0.0")  # an unknown XLA flag would abort XLA
  assert "XLA_FLAGS" not in other_jaxlib and "GLIBC_TUNABLES" in other_jaxlib
  assert "GLIBC_TUNABLES" in _wanted({"JAX_PLATFORMS": "cpu"})


_CHURN = textwrap.dedent("""
    import ctypes, os, resource
    from fabgen.platform import cpu_runtime
    cpu_runtime.start()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(6):  # what XLA:CPU does with a step's temporaries: malloc, write, free
      block = libc.malloc(64 << 20)
      ctypes.memset(block, 1, 64 << 20)
      libc.free(block)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(os.environ.get("FABGEN_CPU_RUNTIME"), faults)
""")


@pytest.mark.skipif(not APPLIES, reason="not a glibc CPU host (the settings are not applied)")
def test_the_restart_keeps_freed_pages_mapped():
  """Six 64 MB malloc/write/free rounds: faulted in six times by default, once after start()."""
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAX_PLATFORMS")}
  runs = {}
  for mode in ("default", ""):
    env[cpu_runtime.OPT_OUT] = mode
    out = subprocess.run([sys.executable, "-c", _CHURN], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    runs[mode] = out.stdout.split()
  pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
  assert runs["default"][0] == "default" and int(runs["default"][1]) > 5 * pages, runs
  assert runs[""][0] == cpu_runtime.RESTARTED and int(runs[""][1]) < 2 * pages, runs


def test_the_cli_starts_under_the_settings_except_for_compile_and_demo(monkeypatch, capsys):
  from fabgen.cli import main as cli  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(cpu_runtime, "start", lambda: calls.append(True))
  monkeypatch.setattr(sys, "argv", ["fabgen"])
  assert cli.main() == 0  # prints the help
  assert calls == [True]
  monkeypatch.setattr(sys, "argv", ["fabgen", "compile"])  # no --config: argparse exits
  with pytest.raises(SystemExit):
    cli.main()
  assert calls == [True]
  monkeypatch.setattr(sys, "argv", ["fabgen", "demo", "--help"])
  with pytest.raises(SystemExit):
    cli.main()
  assert calls == [True]
  cli.main(["--help"])  # called from Python: the caller's process, left alone
  assert calls == [True]
  capsys.readouterr()


def test_allocator_mode_preloads_the_library_without_tunables_or_flag(tmp_path):
  lib = tmp_path / "libtcmalloc_minimal.so.4"
  lib.write_bytes(b"")
  env = _wanted({"FABGEN_CPU_RUNTIME": "allocator", "LD_PRELOAD": "/opt/other.so"},
                allocator=str(lib))
  assert env["LD_PRELOAD"].split() == [str(lib), "/opt/other.so"]
  assert env[cpu_runtime.PRELOADED] == str(lib)
  assert cpu_runtime.PRELOADED == grouped_conv.ALLOCATOR_ENV  # what auto reads
  assert env["TCMALLOC_RELEASE_RATE"] == "0" and "retain:true" in env["MALLOC_CONF"]
  assert "GLIBC_TUNABLES" not in env and "XLA_FLAGS" not in env
  assert _wanted(env, allocator=str(lib))["LD_PRELOAD"] == env["LD_PRELOAD"]  # idempotent
  user = _wanted({"FABGEN_CPU_RUNTIME": "allocator", "TCMALLOC_RELEASE_RATE": "5"},
                 allocator=str(lib))
  assert user["TCMALLOC_RELEASE_RATE"] == "5"  # the user's setting is kept


def test_the_allocator_is_found_named_or_reported(tmp_path):
  assert cpu_runtime.find_allocator({}, dirs=(str(tmp_path),)) == ""
  (tmp_path / "libjemalloc.so.2").write_bytes(b"")
  assert cpu_runtime.find_allocator({}, dirs=(str(tmp_path),)) == str(tmp_path / "libjemalloc.so.2")
  (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")  # tcmalloc first
  assert cpu_runtime.find_allocator({}, dirs=(str(tmp_path),)).endswith("tcmalloc_minimal.so.4")
  named = {cpu_runtime.MALLOC_LIB: str(tmp_path / "libjemalloc.so.2")}
  assert cpu_runtime.find_allocator(named, dirs=()) == named[cpu_runtime.MALLOC_LIB]
  with pytest.raises(FileNotFoundError, match="FABGEN_MALLOC_LIB='/no/such.so'"):
    cpu_runtime.find_allocator({cpu_runtime.MALLOC_LIB: "/no/such.so"})
  with pytest.raises(RuntimeError, match="libtcmalloc-minimal4"):
    _wanted({"FABGEN_CPU_RUNTIME": "allocator"}, allocator="")


def test_start_stops_with_the_message_when_the_allocator_is_missing(monkeypatch):
  monkeypatch.setenv(cpu_runtime.OPT_OUT, "allocator")
  monkeypatch.setenv(cpu_runtime.MALLOC_LIB, "/no/such.so")
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  monkeypatch.setattr(cpu_runtime, "applies", lambda environ, accelerator=None: True)
  with pytest.raises(SystemExit, match="FABGEN_MALLOC_LIB='/no/such.so': no such file"):
    cpu_runtime.start()


_ALLOCATOR_PROBE = textwrap.dedent("""
    import os
    from fabgen.nn import grouped_conv
    from fabgen.platform import cpu_runtime
    cpu_runtime.start()
    maps = open("/proc/self/maps").read()
    print(os.environ.get("FABGEN_CPU_RUNTIME"), os.path.basename(os.environ["LD_PRELOAD"]) in maps,
          grouped_conv.default_impl("cpu"), "ynn" in os.environ.get("XLA_FLAGS", "none"))
""")


@pytest.mark.skipif(not (APPLIES and cpu_runtime.find_allocator(os.environ)),
                    reason="no tcmalloc / jemalloc installed on this host")
def test_the_restart_runs_under_the_allocator_and_auto_follows():
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_PLATFORMS", "LD_PRELOAD", "XLA_FLAGS")}
  env[cpu_runtime.OPT_OUT] = "allocator"
  out = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE], env=env, capture_output=True,
                       text=True, check=True, timeout=120)
  assert out.stdout.split() == [cpu_runtime.RESTARTED, "True", "per_group", "False"], out
