"""The package's layering, read from the source (ast): who may import whom. Floors, from the bottom:

    melkit/util/                          imports nothing of melkit: errors, files, progress, tf, options, fmt
    melkit/data/                          records, readers, split, the preprocessing contract, pipeline, fetch
    melkit/core/                          shared by the stages: recipe, model, run, card, litert, metrics
    melkit/train/ convert/ bench/         the three stages: util, data and core only, never each other
    melkit/release/                       what turns a model into deliverables: may use any stage
    melkit/cli.py, demo.py, __main__.py   commands and the whole job

A module imports only from its own floor or below (a folder's modules import each other freely; the stages
are one floor of three rooms that do not). A function-local import is allowed only where it defers something
heavy (TensorFlow, LiteRT, TFMOT, matplotlib, or a melkit module that imports one at its top), and says so in
a comment on its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "melkit"
FLOORS = {"util": 0, "data": 1, "core": 2, "train": 3, "convert": 3, "bench": 3, "release": 4, "app": 5}
STAGES = {name for name, floor in FLOORS.items() if floor == 3}
HEAVY_EXTERNAL = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "ai_edge_litert.interpreter",
                  "matplotlib")


def _is_heavy_external(module: str) -> bool:
    return any(module == h or module.startswith(h + ".") for h in HEAVY_EXTERNAL)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree, modules=()):
    """(imported module, is function-local, node) for every import in the tree; ``modules``: melkit's
    modules, to tell a submodule imported from its package from a name the package exports."""
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
            # "from melkit.bench import report" imports the submodule, not the package's public face
            subs = [f"{n.module}.{a.name}" for a in n.names if f"{n.module}.{a.name}" in modules]
            if len(subs) < len(n.names):
                yield n.module, id(n) not in top, n
            for sub in subs:
                yield sub, id(n) not in top, n


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        source = path.read_text()
        tree = ast.parse(source)
        lines = source.splitlines()
        edges[name] = [(m, local, lines[n.lineno - 1], n.lineno) for m, local, n in _imports(tree, modules)
                       if m in modules or m.split(".")[0] != "melkit"]
    return modules, edges


MODULES, EDGES = _graph()


def _internal(name):
    return [(m, local, line, no) for m, local, line, no in EDGES[name] if m in MODULES and m != "melkit"]


def _layer(name: str) -> str:
    """The folder a module lives in (its floor's name); the package's own modules are the apps."""
    parts = name.split(".")
    if len(parts) == 1:
        return "util"  # melkit/__init__.py: the version, nothing imported
    return parts[1] if parts[1] in FLOORS else "app"


def test_every_folder_has_a_floor():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(FLOORS), f"folders without a floor in FLOORS: {sorted(folders - set(FLOORS))}"


def test_stages_never_import_each_other():
    bad = [f"{name}:{no} -> {m}" for name in MODULES for m, _, _, no in _internal(name)
           if _layer(name) in STAGES and _layer(m) in STAGES and _layer(m) != _layer(name)]
    assert not bad, "a stage imports another stage:\n" + "\n".join(bad)


def test_imports_only_from_the_same_floor_or_below():
    bad = [f"{name}:{no} -> {m} ({_layer(name)} imports {_layer(m)}, a floor above it)"
           for name in MODULES for m, _, _, no in _internal(name) if FLOORS[_layer(m)] > FLOORS[_layer(name)]]
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
    found = [(m, local) for m, local, _ in _imports(tree, MODULES)]
    assert ("melkit.convert.export", True) in found
    assert _layer("melkit.train.trainer") in STAGES and _layer("melkit.convert.export") in STAGES
    assert _layer("melkit.core.run") == "core" and _layer("melkit.release.bundle") == "release"
    assert _layer("melkit.cli") == "app" and _layer("melkit.util.files") == "util"


def test_heavy_detection():
    heavy = _heavy_modules()
    assert {"melkit.util.tf", "melkit.train.stages"} <= heavy
    assert not heavy & {"melkit.util.errors", "melkit.util.files", "melkit.data.readers", "melkit.cli"}


FACES = ["melkit.data", "melkit.train", "melkit.convert", "melkit.bench", "melkit.release"]


def test_each_package_face_names_what_its_modules_define():
    """``from melkit.train import TrainOptions, run_train``: every name a package's face lists resolves, to the
    object its submodule defines."""
    import importlib

    for name in FACES:
        package = importlib.import_module(name)
        assert package.__all__, name
        for attr in package.__all__:
            value = getattr(package, attr)
            module = importlib.import_module(f"{name}.{package._EXPORTS[attr]}")
            assert value is getattr(module, attr), f"{name}.{attr}"
        assert set(package.__all__) <= set(dir(package))


def test_a_face_loads_nothing_until_used():
    """Importing one module of a package does not import the rest through its face (melkit.util.lazy): a
    reader of the preprocessing contract does not load the download code."""
    import subprocess
    import sys

    code = ("import sys, melkit.data.contract, melkit.bench.latency; "
            "print(sorted(m for m in ('melkit.data.fetch', 'melkit.data.synth', 'melkit.bench.bench') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
