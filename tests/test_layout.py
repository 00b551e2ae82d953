"""The package layout a newcomer relies on: one home per concept, dependencies that point one
way (no import cycle, function-level imports counted), small modules, a short top level."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "leave_one_out")
MAX_LINES = 500  # "about 500": one concept per module
MAX_FUNCTION_LEVEL_IMPORTS = 8  # imports that must wait: after flags, lazy attributes, torch
# The top level holds the method and the entry points; everything else lives in a folder.
TOP_LEVEL = {
  "__init__",
  "augment",
  "render",
  "models",
  "losses",
  "optimizer",
  "train",
  "sharding",
  "config",
  "fields",
  "extract",
  "pretrained",
  "main",
  "visualize",
  "resnet",
  "standalone",  # the model in one file that imports nothing from the package (exports need it)
  "torch_io",  # PyTorch checkpoints in and out: an entry point's format, beside pretrained
}
FOLDERS = {"data", "evaluate", "run", "benchmarks", "experiments", "objectives"}


def _modules():
  """{dotted name: path} of every module of the package."""
  out = {}
  for dirpath, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
  return out


def _imports(path, modules, *, function_level: bool):
  """Project modules ``path`` imports: at its top level, or (``function_level``) inside
  functions and classes only."""
  tree = ast.parse(open(path).read())
  top = {id(node) for node in tree.body}
  found = set()
  for node in ast.walk(tree):
    if (id(node) in top) == function_level:
      continue
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name in modules)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for a in node.names:
        full = f"{node.module}.{a.name}"
        found.add(full if full in modules else node.module)
  return {m for m in found if m in modules}


def _function_level_import_statements(path) -> list[int]:
  tree = ast.parse(open(path).read())
  top = {id(node) for node in tree.body}
  lines = []
  for node in ast.walk(tree):
    if id(node) in top or not isinstance(node, (ast.Import, ast.ImportFrom)):
      continue
    names = (
      [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
    )
    if any(n == "leave_one_out" or n.startswith("leave_one_out.") for n in names):
      lines.append(node.lineno)
  return lines


def test_no_import_cycles_counting_imports_inside_functions():
  modules = _modules()
  graph = {
    m: _imports(p, modules, function_level=False) | _imports(p, modules, function_level=True)
    for m, p in modules.items()
  }
  # A module importing its own package's __init__ is not a cycle unless __init__ imports back.
  state, cycles = {}, []

  def visit(m, stack):
    state[m] = "open"
    for dep in sorted(graph[m]):
      if state.get(dep) == "open":
        cycles.append(stack[stack.index(dep) :] + [dep])
      elif dep not in state:
        visit(dep, stack + [dep])
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m, [m])
  assert not cycles, f"import cycles: {cycles}"


def test_imports_of_the_package_inside_functions_are_few():
  found = {
    os.path.relpath(p, ROOT): lines
    for p in _modules().values()
    if (lines := _function_level_import_statements(p))
  }
  count = sum(len(lines) for lines in found.values())
  assert count <= MAX_FUNCTION_LEVEL_IMPORTS, f"{count} function-level imports: {found}"


def _singular(name: str) -> str:
  if name.endswith("sses"):
    return name[:-2]
  return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def test_no_two_modules_share_a_name_up_to_folder_or_plural():
  seen = {}
  for dotted in _modules():  # a package counts under its folder's name
    name = dotted.rsplit(".", 1)[-1]
    if name in ("__main__", "leave_one_out"):
      continue
    seen.setdefault(_singular(name), []).append(dotted)
  clashes = {k: v for k, v in seen.items() if len(v) > 1}
  assert not clashes, f"modules whose names differ only by folder or plural: {clashes}"


def test_the_top_level_holds_the_method_and_the_entry_points_only():
  entries = os.listdir(PACKAGE)
  modules = {e[:-3] for e in entries if e.endswith(".py")}
  folders = {e for e in entries if os.path.isdir(os.path.join(PACKAGE, e)) and e != "__pycache__"}
  assert modules <= TOP_LEVEL, f"modules outside the allow-list: {sorted(modules - TOP_LEVEL)}"
  assert folders <= FOLDERS, f"folders outside the allow-list: {sorted(folders - FOLDERS)}"


def test_every_folder_says_what_it_holds():
  for dirpath, _, files in os.walk(PACKAGE):
    if "__init__.py" in files:
      doc = ast.get_docstring(ast.parse(open(os.path.join(dirpath, "__init__.py")).read()))
      assert doc, f"{os.path.relpath(dirpath, ROOT)}/__init__.py has no docstring (its rule)"


def test_modules_stay_small():
  sizes = {m: sum(1 for _ in open(p)) for m, p in _modules().items()}
  big = {m: n for m, n in sizes.items() if n > MAX_LINES}
  assert not big, f"modules over {MAX_LINES} lines (split where a concept ends): {big}"
