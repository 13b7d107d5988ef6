"""The process settings a CPU training run starts with: glibc malloc tunables and XLA:CPU flags.

Two measured causes made the `r3gan_compare` step 3x slower than it needs to be on a CPU
(README, Benchmarks; `benchmarks/profile_r3gan_step.py` gives the per-op table):

* Pages. XLA:CPU allocates a step's buffers with malloc and frees them when the step ends. glibc
  serves every block above its mmap threshold (128 KB .. 32 MB) with fresh pages from mmap and
  returns them on free, and gives each thread an arena whose large blocks also go to mmap; so
  every step page-faulted its working set anew (batch 16: 6.5 GB of temporaries, 6 M minor faults
  and ~28 CPU-s of kernel time a step). With mmap off, trimming off and one arena, freed blocks
  stay in the heap for the next step: 34.8 -> 17.4 s/step on 2 cores. The cost: a process keeps
  its peak resident memory until it exits, which a training job reaches in its first step anyway.
* Threads. XLA:CPU hands convolutions to YNNPACK, which runs them on one thread; its own
  (Eigen) convolution uses the whole intra-op pool. Keeping YNNPACK for dots only
  (`--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`): 15.9 -> 14.8 s/step.

`python -m fabgen.platform.cpu_runtime CMD ...` runs any command under them (the test suite
keeps the defaults: compile-bound, it runs slower under them; `fabgen compile` and `demo` too).
glibc reads tunables once, when a process starts (`mallopt` at run time cannot set a trim
threshold above 2 GB: measured 22.8 s/step), so `start()` re-executes the process once with
`GLIBC_TUNABLES` extended; XLA reads `XLA_FLAGS` when JAX first initialises its backend, so the
flag only has to be in the environment before that. The XLA flag is applied only for the jaxlib
versions it was measured on (an unknown flag aborts XLA). Skipped where it cannot apply or is not
wanted: an accelerator present (`/dev/nvidia*`, `/dev/accel*`, `/dev/kfd`), `JAX_PLATFORMS`
naming no cpu, or `FABGEN_CPU_RUNTIME=default`; the tunables also where the C library is not
glibc. A setting the user made (a key in `GLIBC_TUNABLES`, the flag in `XLA_FLAGS`) is kept.

`FABGEN_CPU_RUNTIME=flags` sets the XLA flag without the tunables, for the `per_group` grouped
convolution (`fabgen.nn.grouped_conv`): its many small dense convolutions call oneDNN's sgemm,
which mallocs a workspace per call, and with one arena glibc's `_int_malloc` then took 38 % of the
step's CPU time (`perf record`; r3gan_compare, batch 16, one conv per group at every size: 27.0
CPU-s a step under the tunables, 16.0-29.5 at glibc's defaults, varying with what else holds the
machine's memory; `grouped_conv`'s docstring has the numbers).

`FABGEN_CPU_RUNTIME=allocator` gives both at once: it preloads tcmalloc (or jemalloc; the library
in `FABGEN_MALLOC_LIB`, else the first found, else a clear error) with its "never release" settings:
per-thread caches make the small per-call mallocs cheap, and freed memory stays mapped for the
next step. No glibc tunables, and no XLA flag (YNNPACK's convolution is the faster one for
`per_group`'s dense convs: 7.93 -> 7.35 s/step); `grouped_conv`'s `auto` then picks `per_group`
(it reads `FABGEN_CPU_ALLOCATOR`). Measured (r3gan_compare, batch 16, fabgen alone, 2 cores):
7.35 s/step with tcmalloc against 12.3-14.1 for `custom` under the tunables; jemalloc 8.90 (with
the flag).
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import platform
import sys
from collections.abc import Mapping

OPT_OUT = "FABGEN_CPU_RUNTIME"  # "default": as it is; "flags": XLA flags only; "allocator"
FLAGS_ONLY = "flags"
ALLOCATOR = "allocator"  # preload tcmalloc / jemalloc instead of glibc's tunables (docstring)
MALLOC_LIB = "FABGEN_MALLOC_LIB"  # the allocator library to preload; default: the first found
PRELOADED = "FABGEN_CPU_ALLOCATOR"  # set in a process restarted under an allocator: its path
ALLOCATOR_LIBS = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4", "libjemalloc.so.2")
ALLOCATOR_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                  "/usr/lib", "/usr/local/lib")
ALLOCATOR_SETTINGS = {  # keep freed memory for the next step: no release to the OS
    "TCMALLOC_RELEASE_RATE": "0",
    "MALLOC_CONF": "retain:true,dirty_decay_ms:-1,muzzy_decay_ms:-1",
}
RESTARTED = "restarted"  # set in the restarted process: never restart twice
TUNABLES = {
    "glibc.malloc.mmap_max": "0",  # large blocks from the heap, not from fresh mmap pages
    "glibc.malloc.trim_threshold": str(1 << 40),  # never hand the heap's top back on free
    "glibc.malloc.arena_max": "1",  # worker-thread arenas would fall back to mmap above 64 MB
}
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
XLA_CPU_FLAGS = {YNN_FLAG: "-individual_convolution"}
XLA_FLAGS_TESTED_ON = ("0.10.2",)  # jaxlib versions that know XLA_CPU_FLAGS (measured there)
ACCELERATOR_NODES = ("/dev/nvidia[0-9]*", "/dev/accel[0-9]*", "/dev/kfd")


def _parse_tunables(tunables: str) -> dict[str, str]:
  pairs = (item.split("=", 1) for item in tunables.split(":") if item)
  return {p[0]: p[1] if len(p) == 2 else "" for p in pairs}


def _jaxlib_version() -> str:
  try:
    return importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return ""


def applies(environ: Mapping[str, str], accelerator: bool | None = None) -> bool:
  """Whether this process is a CPU run that should get the settings at all."""
  if accelerator is None:
    accelerator = any(glob.glob(pattern) for pattern in ACCELERATOR_NODES)
  platforms = environ.get("JAX_PLATFORMS", "")
  return not (accelerator or environ.get(OPT_OUT, "") == "default"
              or (platforms and "cpu" not in platforms.split(",")))


def find_allocator(environ: Mapping[str, str], dirs: tuple[str, ...] = ALLOCATOR_DIRS) -> str:
  """The allocator library to preload: `$FABGEN_MALLOC_LIB`, else the first of `ALLOCATOR_LIBS`
  in `dirs` (Debian/Ubuntu: `apt install libtcmalloc-minimal4`); "" where there is none."""
  named = environ.get(MALLOC_LIB, "")
  if named:
    if not os.path.isfile(named):
      raise FileNotFoundError(f"{MALLOC_LIB}={named!r}: no such file (the malloc library to "
                              f"preload, e.g. libtcmalloc_minimal.so.4)")
    return named
  for name in ALLOCATOR_LIBS:
    for folder in dirs:
      if os.path.isfile(os.path.join(folder, name)):
        return os.path.join(folder, name)
  return ""


def _with_allocator(environ: Mapping[str, str], library: str | None) -> dict[str, str]:
  """The allocator mode: the library preloaded with its retain settings, no tunables, no flag."""
  library = find_allocator(environ) if library is None else library
  if not library:
    raise RuntimeError(f"{OPT_OUT}={ALLOCATOR}: none of {', '.join(ALLOCATOR_LIBS)} in "
                       f"{', '.join(ALLOCATOR_DIRS)}; install one (Debian/Ubuntu: apt install "
                       f"libtcmalloc-minimal4) or name it in {MALLOC_LIB}")
  env = dict(environ)
  preload = environ.get("LD_PRELOAD", "").split()
  env["LD_PRELOAD"] = " ".join(preload if library in preload else [library, *preload])
  env[PRELOADED] = library
  for key, value in ALLOCATOR_SETTINGS.items():
    env.setdefault(key, value)
  return env


def wanted_environment(environ: Mapping[str, str], libc: str | None = None,
                       accelerator: bool | None = None, jaxlib: str | None = None,
                       allocator: str | None = None) -> dict[str, str]:
  """`environ` with the settings this process should run under added (a copy; may be equal).

  `allocator`: the library the allocator mode preloads (default: `find_allocator`).
  """
  env = dict(environ)
  if not applies(environ, accelerator):
    return env
  if environ.get(OPT_OUT, "") == ALLOCATOR:
    return _with_allocator(environ, allocator)
  libc = platform.libc_ver()[0] if libc is None else libc
  if libc == "glibc" and environ.get(OPT_OUT, "") != FLAGS_ONLY:
    current = _parse_tunables(environ.get("GLIBC_TUNABLES", ""))
    merged = {**TUNABLES, **current}
    env["GLIBC_TUNABLES"] = ":".join(f"{k}={v}" for k, v in merged.items())
  jaxlib = _jaxlib_version() if jaxlib is None else jaxlib
  if jaxlib in XLA_FLAGS_TESTED_ON:
    flags = environ.get("XLA_FLAGS", "")
    extra = [f"{k}={v}" for k, v in XLA_CPU_FLAGS.items() if k not in flags]
    env["XLA_FLAGS"] = " ".join([flags, *extra]).strip()
  return env


def start() -> None:
  """Put this process under the settings: XLA flags in place, a restart for glibc tunables.

  Call first thing in a `__main__` entry point, before JAX runs anything: a restart replaces
  the process image (same interpreter, same command line).
  """
  if os.environ.get(OPT_OUT, "") == RESTARTED:  # applied before the restart (mode included)
    return
  try:
    env = wanted_environment(os.environ)
  except (FileNotFoundError, RuntimeError) as e:  # the allocator mode without its library
    sys.exit(str(e))
  if "XLA_FLAGS" in env:
    os.environ["XLA_FLAGS"] = env["XLA_FLAGS"]
  restart = any(env.get(k, "") != os.environ.get(k, "") for k in ("GLIBC_TUNABLES", "LD_PRELOAD"))
  if restart:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, {**env, OPT_OUT: RESTARTED})


def main(argv: list[str]) -> None:
  """`python -m fabgen.platform.cpu_runtime CMD [ARG...]`: run CMD under the settings."""
  if not argv:
    sys.exit("usage: python -m fabgen.platform.cpu_runtime CMD [ARG...]  (runs CMD under the CPU "
             "run's malloc settings and XLA:CPU flags)")
  os.execvpe(argv[0], argv, {**wanted_environment(os.environ), OPT_OUT: RESTARTED})


def describe() -> dict[str, str]:
  """The settings in force, for a benchmark's record."""
  return {k: os.environ.get(k, "") for k in ("GLIBC_TUNABLES", "XLA_FLAGS", "LD_PRELOAD")}


if __name__ == "__main__":
  main(sys.argv[1:])
