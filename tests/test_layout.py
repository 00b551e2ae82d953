"""The package layout a newcomer relies on: no import cycles, modules of one concept each."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "leave_one_out")
MAX_LINES = 550  # "about 500": one concept per module


def _modules():
  """{dotted name: path} of every module of the package."""
  out = {}
  for dirpath, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
  return out


def _top_level_imports(path, modules):
  """Project modules imported when ``path`` is imported (function-level imports excluded)."""
  tree = ast.parse(open(path).read())
  found = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name in modules)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for a in node.names:
        full = f"{node.module}.{a.name}"
        found.add(full if full in modules else node.module)
  return {m for m in found if m in modules}


def test_no_import_cycles():
  modules = _modules()
  graph = {m: _top_level_imports(p, modules) for m, p in modules.items()}
  # A module importing its own package's __init__ is not a cycle unless __init__ imports back.
  state, cycles = {}, []

  def visit(m, stack):
    state[m] = "open"
    for dep in sorted(graph[m]):
      if state.get(dep) == "open":
        cycles.append(stack[stack.index(dep):] + [dep])
      elif dep not in state:
        visit(dep, stack + [dep])
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [m])
  assert not cycles, f"import cycles: {cycles}"


def test_modules_stay_small():
  sizes = {m: sum(1 for _ in open(p)) for m, p in _modules().items()}
  big = {m: n for m, n in sizes.items() if n > MAX_LINES}
  assert not big, f"modules over {MAX_LINES} lines (split where a concept ends): {big}"
