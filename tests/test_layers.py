"""The package's layering, read from the source (ast): who may import whom.

    melkit/cli.py, demo.py, bundle.py, golden.py, report.py   commands and apps
    melkit/train/ convert/ benchmark/                          the three stages: core and data only
    melkit/core/                                               run API, card, metrics, model, files
    melkit/data/                                               readers, split, contract, pipeline

``data`` may use only core's leaf modules (errors, files, progress, tf), which import nothing of melkit.
A function-local import is allowed only where it defers something heavy (TensorFlow, LiteRT, TFMOT,
matplotlib, or a melkit module that imports one at its top), and says so in a comment on its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "melkit"
STAGES = {"train", "convert", "benchmark"}
APPS = {"cli", "demo", "bundle", "golden", "report", "__main__"}
CORE_LEAVES = {"melkit.core.errors", "melkit.core.files", "melkit.core.progress", "melkit.core.tf",
               "melkit.core.native_logs"}
HEAVY_EXTERNAL = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "ai_edge_litert.interpreter",
                  "matplotlib")


def _is_heavy_external(module: str) -> bool:
    return any(module == h or module.startswith(h + ".") for h in HEAVY_EXTERNAL)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree):
    """(imported module, is function-local, node) for every import in the tree."""
    top = {id(n) for n in tree.body}
    # Imports guarded at module level (if/try) count as top-level ones.
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            top |= {id(c) for c in ast.walk(n) if isinstance(c, (ast.Import, ast.ImportFrom))}
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                yield a.name, id(n) not in top, n
        elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
            yield n.module, id(n) not in top, n
            for a in n.names:  # "from melkit.benchmark import report" imports the submodule
                yield f"{n.module}.{a.name}", id(n) not in top, n


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        source = path.read_text()
        tree = ast.parse(source)
        lines = source.splitlines()
        edges[name] = [(m, local, lines[n.lineno - 1], n.lineno) for m, local, n in _imports(tree)
                       if m in modules or m.split(".")[0] != "melkit"]
    return modules, edges


MODULES, EDGES = _graph()


def _internal(name):
    return [(m, local, line, no) for m, local, line, no in EDGES[name] if m in MODULES and m != "melkit"]


def _layer(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 1:
        return "package"
    return parts[1] if parts[1] in STAGES | {"core", "data"} else "app"


def test_stages_import_only_core_and_data():
    bad = [f"{name}:{no} -> {m}" for name in MODULES for m, _, _, no in _internal(name)
           if _layer(name) in STAGES and _layer(m) in STAGES and _layer(m) != _layer(name)]
    assert not bad, "a stage imports another stage:\n" + "\n".join(bad)


def test_lower_layers_never_import_upward():
    rank = {"package": 0, "data": 1, "core": 2, "train": 3, "convert": 3, "benchmark": 3, "app": 4}
    bad = []
    for name in MODULES:
        for m, _, _, no in _internal(name):
            if _layer(name) == "data" and _layer(m) == "core":
                # data sits below core, except for core's leaves, which import nothing of melkit
                if m not in CORE_LEAVES:
                    bad.append(f"{name}:{no} -> {m} (data may use only {sorted(CORE_LEAVES)})")
            elif rank[_layer(m)] > rank[_layer(name)]:
                bad.append(f"{name}:{no} -> {m}")
    for leaf in CORE_LEAVES:
        bad += [f"{leaf}:{no} -> {m} (a core leaf)" for m, _, _, no in _internal(leaf) if m not in CORE_LEAVES]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = {name: sorted({m for m, *_ in _internal(name)}) for name in MODULES}
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in graph[n]:
            if state.get(m) == "open":
                cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _heavy_modules() -> set:
    """melkit modules that import something heavy at their top level (directly or through melkit)."""
    heavy = set()
    changed = True
    while changed:
        changed = False
        for name in MODULES:
            if name in heavy:
                continue
            for m, local, _, _ in EDGES[name]:
                if not local and (_is_heavy_external(m) or m in heavy):
                    heavy.add(name)
                    changed = True
                    break
    return heavy


def test_function_local_imports_only_defer_heavy_modules_and_say_so():
    heavy = _heavy_modules()
    statements = {}  # (module, line number) -> (source line, what it imports)
    for name in MODULES:
        for m, local, line, no in EDGES[name]:
            if local:
                statements.setdefault((name, no), (line, []))[1].append(m)
    bad = []
    for (name, no), (line, imported) in statements.items():
        deferred = [m for m in imported if _is_heavy_external(m) or m in heavy]
        if not deferred:
            bad.append(f"{name}:{no} imports {imported[0]} locally, but it is light: import it at the top")
        elif "#" not in line:
            bad.append(f"{name}:{no} defers {deferred[0]} without a comment saying why")
    assert not bad, "\n".join(bad)


def test_the_layer_check_sees_a_cross_stage_import(tmp_path):
    """The checker itself: a stage importing another stage is caught."""
    tree = ast.parse("def f():\n    from melkit.convert.export import with_two_scores  # TensorFlow\n")
    found = [(m, local) for m, local, _ in _imports(tree)]
    assert ("melkit.convert.export", True) in found
    assert _layer("melkit.train.trainer") in STAGES and _layer("melkit.convert.export") in STAGES
    assert _layer("melkit.core.run") == "core" and _layer("melkit.bundle") == "app"


def test_heavy_detection():
    heavy = _heavy_modules()
    assert {"melkit.core.tf", "melkit.train.stages"} <= heavy
    assert not heavy & {"melkit.core.errors", "melkit.core.files", "melkit.data.readers", "melkit.cli"}
