"""fabgen's packages import one way: each layer only from the layers before it.

  platform, nn          (the two foundations; neither imports the other)
  -> data -> gan -> texture   (the network stage 1's condition can be trained on)
  -> stage1, stage2, diffusion, dgt, detector   (the models; stage2 may import stage1: the
                                                 paper trains stage 2 on stage-1 outputs)
  -> synthesis -> inspection -> adapt, openset -> cli

An AST walk over every module under fabgen/ checks every `import` statement (module-level and
inside functions alike: a deferred import still runs against the order). Names that only appear
as registry strings (`fabgen.platform.registry.TASKS`, `fabgen.synthesis.base.SYNTHESIZERS`) are
not imports and are not checked. Packages listed here that do not exist yet are fine; a package
that is not listed fails the test, so a new one has to be placed in the order.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fabgen")

LAYERS = [
    {"platform", "nn"},
    {"data"},
    {"gan"},
    {"texture"},
    {"stage1", "stage2", "diffusion", "dgt", "detector"},
    {"synthesis"},
    {"inspection"},
    {"adapt", "openset"},
    {"cli"},
]
ALSO_ALLOWED = {("stage2", "stage1")}  # (importer, imported) within one layer
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def allowed(importer: str, imported: str) -> bool:
  if importer == imported:
    return True
  if (importer, imported) in ALSO_ALLOWED:
    return True
  return RANK[imported] < RANK[importer]


def _modules():
  for folder, _, files in os.walk(ROOT):
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        yield path, os.path.relpath(path, ROOT).split(os.sep)


def _fabgen_imports(tree: ast.AST, parts: list[str]):
  """(line, imported top-level fabgen package or None for `fabgen` itself) per import."""
  package = parts[:-1]
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name == "fabgen" or alias.name.startswith("fabgen."):
          yield node.lineno, (alias.name.split(".") + [None])[1]
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: resolve against this module's package
        base = package[:len(package) - node.level + 1]
        target = base + (node.module.split(".") if node.module else [])
        if target:
          yield node.lineno, target[0]
        else:
          for alias in node.names:
            yield node.lineno, alias.name
      elif node.module and (node.module == "fabgen" or node.module.startswith("fabgen.")):
        dotted = node.module.split(".")
        if len(dotted) > 1:
          yield node.lineno, dotted[1]
        else:  # `from fabgen import synthesis`
          for alias in node.names:
            yield node.lineno, alias.name


def test_every_package_is_placed_in_the_order():
  packages = {d for d in os.listdir(ROOT)
              if os.path.isdir(os.path.join(ROOT, d)) and not d.startswith("__")}
  assert packages - set(RANK) == set(), "place new fabgen packages in LAYERS"


def test_imports_run_one_way():
  bad = []
  for path, parts in _modules():
    if len(parts) == 1:  # fabgen/__init__.py
      continue
    importer = parts[0]
    with open(path) as f:
      tree = ast.parse(f.read(), path)
    for line, imported in _fabgen_imports(tree, parts):
      if imported is None or imported.endswith(".py") or imported not in RANK:
        if imported not in (None, "__version__"):
          bad.append(f"fabgen/{'/'.join(parts)}:{line} imports unknown fabgen.{imported}")
        continue
      if not allowed(importer, imported):
        bad.append(f"fabgen/{'/'.join(parts)}:{line}: {importer} imports {imported}")
  assert not bad, "imports against the layer order:\n" + "\n".join(bad)


@pytest.mark.parametrize("importer,imported,ok", [
    ("stage2", "stage1", True), ("stage1", "stage2", False), ("platform", "nn", False),
    ("nn", "data", False), ("data", "nn", True), ("synthesis", "stage2", True),
    ("detector", "synthesis", False), ("cli", "adapt", True), ("inspection", "adapt", False)])
def test_the_rule_itself(importer, imported, ok):
  assert allowed(importer, imported) == ok
