"""The package's import structure matches docs/architecture.md: no circles, no
upward imports, no library code reading configs, launch.py or flags."""

import ast
import os
import re

from conftest import ROOT

PACKAGE = "spect_fastgan_jax"


def _layers() -> dict[str, int]:
  """module (without the package prefix) -> layer, from docs/architecture.md's table."""
  text = open(os.path.join(ROOT, "docs", "architecture.md")).read()
  out = {}
  for layer, names in re.findall(r"^\| (\d+) \| ([^|]+) \|$", text, re.M):
    for name in names.split(","):
      assert name.strip() not in out, f"{name.strip()} is in two layers"
      out[name.strip()] = int(layer)
  return out


def _modules() -> dict[str, str]:
  """module name (without the package prefix, '' for the package) -> file."""
  out = {}
  for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(folder, f), os.path.join(ROOT, PACKAGE))[:-3]
        name = rel.replace(os.sep, ".")
        if name == "__init__":
          name = ""
        elif name.endswith(".__init__"):
          name = name[: -len(".__init__")]
        out[name] = os.path.join(folder, f)
  return out


def _imports(path: str, name: str, modules) -> tuple[set[str], set[str]]:
  """(package modules imported anywhere in the file, other top-level modules imported)."""
  tree = ast.parse(open(path).read())
  pkg = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  inside, outside = set(), set()

  def add(full: str):
    if full == PACKAGE or full.startswith(PACKAGE + "."):
      rel = full[len(PACKAGE) + 1:]
      while rel and rel not in modules:  # a name inside a module: the module
        rel = rel.rpartition(".")[0]
      inside.add(rel)
    else:
      outside.add(full)

  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        add(a.name)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        parts = ([PACKAGE] + pkg.split(".") if pkg else [PACKAGE])
        base = ".".join(parts[: len(parts) - node.level + 1])
        mod = f"{base}.{node.module}" if node.module else base
      else:
        mod = node.module
      for a in node.names:
        add(f"{mod}.{a.name}")
  inside.discard(name)
  return inside, outside


def _graph():
  modules = _modules()
  return modules, {n: _imports(p, n, modules) for n, p in modules.items()}


def test_every_module_has_a_layer_and_the_table_names_no_missing_module():
  layers, modules = _layers(), _modules()
  named = set(layers)
  assert set(modules) - {""} <= named, f"modules missing from docs/architecture.md: {set(modules) - {''} - named}"
  assert named <= set(modules), f"docs/architecture.md names modules that do not exist: {named - set(modules)}"


def test_no_module_imports_from_a_higher_layer():
  _, graph = _graph()
  upward = _upward(graph, _layers())
  assert not upward, upward


def _circle(graph) -> list[str] | None:
  """One import circle of the graph (a list of modules, first == last), or None."""
  deps = {a: {b for b in inside if b} for a, (inside, _) in graph.items() if a}
  state, path = {}, []

  def visit(n):
    state[n] = "open"
    path.append(n)
    for m in sorted(deps.get(n, ())):
      if state.get(m) == "open":
        return path[path.index(m):] + [m]
      if m not in state:
        found = visit(m)
        if found:
          return found
    path.pop()
    state[n] = "done"
    return None

  for n in sorted(deps):
    if n not in state:
      found = visit(n)
      if found:
        return found
  return None


def _upward(graph, layers) -> list[str]:
  return [f"{a} (layer {layers[a]}) imports {b} (layer {layers[b]})"
          for a, (inside, _) in graph.items() if a for b in sorted(inside)
          if b and layers[b] > layers[a]]


def test_no_import_circle():
  _, graph = _graph()
  circle = _circle(graph)
  assert circle is None, "import circle: " + " -> ".join(circle)


def test_library_reads_no_configs_launch_or_flags():
  _, graph = _graph()
  bad = [f"{a or PACKAGE} imports {o}" for a, (_, outside) in graph.items() for o in outside
         if o.split(".")[0] in ("configs", "launch") or o.startswith("absl.flags")
         or o == "absl.app" or o.startswith("ml_collections.config_flags")]
  assert not bad, bad


def test_configs_import_nothing_from_the_package():
  for f in os.listdir(os.path.join(ROOT, "configs")):
    if f.endswith(".py"):
      tree = ast.parse(open(os.path.join(ROOT, "configs", f)).read())
      for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        assert not any(n.startswith(PACKAGE) for n in names), f"configs/{f} imports {names}"


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
  """The checks above can fail: a planted circle and a planted upward import are found."""
  pkg = tmp_path / PACKAGE
  pkg.mkdir()
  (pkg / "__init__.py").write_text("")
  (pkg / "low.py").write_text("from spect_fastgan_jax import high\n")
  (pkg / "high.py").write_text("def f():\n  from spect_fastgan_jax import low\n")
  modules = {"": str(pkg / "__init__.py"), "low": str(pkg / "low.py"), "high": str(pkg / "high.py")}
  graph = {n: _imports(p, n, modules) for n, p in modules.items()}
  assert _circle(graph) in (["high", "low", "high"], ["low", "high", "low"])
  assert _upward(graph, {"low": 0, "high": 1}) == ["low (layer 0) imports high (layer 1)"]
