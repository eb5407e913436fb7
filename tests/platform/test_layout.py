"""The package's shape (docs/architecture.md): imports flow one way, Ray stays in its rooms, modules
stay small, one module (storage.py) imports an object-store client or names the S3 scheme. Read from the source with ``ast``; nothing is
imported, so a violation is found even in code no other test runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "diod_ray"

# A module over MAX_LINES is allowed only here, each with its reason in docs/architecture.md
# ("Modules over 400 lines").
MAX_LINES = 400
LONG_MODULES = {
    "diod_ray/data/shards/store.py": "one format: row checks, part writer, manifest, reader",
}
# A function over MAX_FUNCTION_LINES (def to last line, nested functions included) is allowed
# only here, with its reason.
MAX_FUNCTION_LINES = 80
LONG_FUNCTIONS: dict[str, str] = {}
# Where Ray may be imported: Ray Train, the Ray Data pipeline (its three modules; the rest of
# data/streaming/, the clip order and augmentation, is plain numpy), Ray Tune.
RAY_ALLOWED = (
    "diod_ray/training/",
    "diod_ray/data/streaming/datasets.py",
    "diod_ray/data/streaming/eval_split.py",
    "diod_ray/data/streaming/batches.py",
    "diod_ray/sweeps/",
)
STORAGE_MODULE = "diod_ray/storage.py"


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (never executed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _imports(name: str, path: Path) -> set[str]:
    """``diod_ray`` modules imported by one module, at module level or inside functions."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join([*pkg, base] if base else pkg)
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # `import diod_ray.a.b` where b is an attribute
                t = t.rpartition(".")[0]
            if t.startswith("diod_ray") and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    return {name: _imports(name, path) for name, path in MODULES.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (iterative DFS with colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in graph:
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child) :] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_the_import_graph_is_read_correctly():
    graph = _graph()
    # module-level, function-level and `from pkg import module` imports are all edges
    assert "diod_ray.training.loop" in graph["diod_ray.training.driver"]  # inside build_trainer
    assert "diod_ray.storage" in graph["diod_ray.data.shards.store"]  # from diod_ray import storage
    assert "diod_ray.config" in graph["diod_ray.training.schedule"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _imports_ray(path: Path) -> bool:
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(
            a.name == "ray" or a.name.startswith("ray.") for a in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level:
            if node.module == "ray" or (node.module or "").startswith("ray."):
                return True
    return False


def test_ray_is_imported_only_by_training_the_data_pipeline_and_sweeps():
    users = {_rel(p) for p in MODULES.values() if _imports_ray(p)}
    assert "diod_ray/training/driver.py" in users  # the check sees function-level imports
    outside = sorted(u for u in users if not u.startswith(RAY_ALLOWED))
    assert not outside, f"Ray imported outside {RAY_ALLOWED}: {outside}"


def test_no_module_over_400_lines_without_a_stated_reason():
    lengths = {_rel(p): len(p.read_text().splitlines()) for p in MODULES.values()}
    too_long = {f: n for f, n in lengths.items() if n > MAX_LINES and f not in LONG_MODULES}
    assert not too_long, f"modules over {MAX_LINES} lines (split, or allow in docs): {too_long}"
    stale = [f for f in LONG_MODULES if lengths.get(f, 0) <= MAX_LINES]
    assert not stale, f"allowed long modules that are no longer long (drop them): {stale}"
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for f in LONG_MODULES:
        assert f in doc, (
            f"{f} is allowed over {MAX_LINES} lines but docs/architecture.md says not why"
        )


def long_functions(source: str, filename: str) -> dict[str, int]:
    """``file:function`` (``file:Class.method``) -> lines, for every function of ``source`` over
    MAX_FUNCTION_LINES; a nested function is counted in its parent and on its own."""
    out = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = child.end_lineno - child.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out[f"{filename}:{prefix}{child.name}"] = n
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source, filename), "")
    return out


def test_no_function_over_80_lines_without_a_stated_reason():
    found = {}
    for p in MODULES.values():
        found.update(long_functions(p.read_text(), _rel(p)))
    too_long = {f: n for f, n in found.items() if f not in LONG_FUNCTIONS}
    assert not too_long, (
        f"functions over {MAX_FUNCTION_LINES} lines (split where a name explains a part, or "
        f"allow in LONG_FUNCTIONS with the reason): {too_long}"
    )
    stale = [f for f in LONG_FUNCTIONS if f not in found]
    assert not stale, f"allowed long functions that are no longer long (drop them): {stale}"
    assert all(reason.strip() for reason in LONG_FUNCTIONS.values())


def test_the_function_check_counts_methods_and_nested_functions():
    def body(indent: int, n: int = MAX_FUNCTION_LINES) -> str:
        return "\n".join(" " * indent + f"x{i} = {i}" for i in range(n))

    source = (
        f"class A:\n    def m(self):\n{body(8)}\n\n\n"
        f"def f():\n    def g():\n{body(8)}\n\n    return g\n\n\n"
        f"def at_the_limit():\n{body(4, MAX_FUNCTION_LINES - 1)}\n"
    )
    assert long_functions(source, "x.py") == {
        "x.py:A.m": MAX_FUNCTION_LINES + 1,  # def line + body
        "x.py:f": MAX_FUNCTION_LINES + 4,
        "x.py:f.g": MAX_FUNCTION_LINES + 1,
    }


# The levels a reader meets, bottom up (docs/architecture.md, "Levels"). A module may import
# modules of its own level or below, never above: the arrows of the package point down. A module
# is placed by its package (or, at the top, its own name); every ``__main__`` is a command line.
LEVELS: dict[int, tuple[str, ...]] = {
    1: (  # errors, config and storage: the ground floor
        "diod_ray",
        "diod_ray.errors",
        "diod_ray.cli_errors",
        "diod_ray.config",
        "diod_ray.storage",
        "diod_ray.published",
    ),
    2: ("diod_ray.data",),  # clips: synthetic, converted, shards, the pipeline
    3: (  # the method in plain PyTorch and what measures it
        "diod_ray.model",
        "diod_ray.objectives",
        "diod_ray.metrics",
        "diod_ray.checkpoint",
        "diod_ray.viz",
    ),
    4: (  # the teacher, and a model evaluated (metrics, gates)
        "diod_ray.teacher",
        "diod_ray.teacher_diagnostics",
        "diod_ray.inference",
        "diod_ray.gate_counts",
        "diod_ray.preconditions",
    ),
    5: ("diod_ray.training",),  # Ray Train
    6: (  # Ray Tune sweeps and the command lines
        "diod_ray.sweeps",
        "diod_ray.train",
        "diod_ray.evaluate",
        "diod_ray.predict",
    ),
}
MAX_LEVELS = 6


def level_of(module: str) -> int | None:
    """The level of a dotted module name, or None when LEVELS does not place it."""
    if module.endswith(".__main__"):
        return MAX_LEVELS
    for level, prefixes in LEVELS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "diod_ray"):
            return level
    return 1 if module == "diod_ray" else None


def unit_of(module: str) -> str:
    """The package-level unit of a module: ``diod_ray.X`` for anything under ``diod_ray.X``,
    except command lines (``__main__``), each its own unit."""
    if module.endswith(".__main__"):
        return module
    return ".".join(module.split(".")[:2])


def climbing_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a module to a module of a higher level, as ``a (L) -> b (L')``."""
    return sorted(
        f"{m} ({level_of(m)}) -> {d} ({level_of(d)})"
        for m, deps in graph.items()
        for d in deps
        if level_of(d) > level_of(m)
    )


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Package-level imports: unit -> units it imports (its own left out)."""
    out: dict[str, set[str]] = {}
    for m, deps in graph.items():
        out.setdefault(unit_of(m), set()).update(unit_of(d) for d in deps)
    return {u: deps - {u} for u, deps in out.items()}


def test_every_module_has_a_level_and_there_are_at_most_six():
    assert sorted(LEVELS) == list(range(1, MAX_LEVELS + 1))
    unplaced = sorted(m for m in MODULES if level_of(m) is None)
    assert not unplaced, f"modules without a level (add them to LEVELS): {unplaced}"
    assert level_of("diod_ray.teacher_diagnostics") == 4 and level_of("diod_ray.teacher") == 4
    assert level_of("diod_ray.data.__main__") == 6 and level_of("diod_ray.data.shards.store") == 2


def test_the_level_check_finds_a_climbing_import():
    planted = {
        "diod_ray.storage": {"diod_ray.errors"},
        "diod_ray.data.inspection.fg_coverage": {"diod_ray.predict", "diod_ray.config"},
        "diod_ray.data.__main__": {"diod_ray.checkpoint"},  # a command line may import anything
    }
    assert climbing_imports(planted) == [
        "diod_ray.data.inspection.fg_coverage (2) -> diod_ray.predict (6)"
    ]
    assert unit_graph({"diod_ray.data.a": {"diod_ray.data.b", "diod_ray.config.schema"}}) == {
        "diod_ray.data": {"diod_ray.config"}
    }


def test_no_import_climbs_a_level():
    """Package-level arrows point down: no module (lazy imports inside functions included)
    imports a module of a higher level."""
    climbing = climbing_imports(_graph())
    assert not climbing, "imports that climb a level:\n" + "\n".join(climbing)


def test_no_package_level_import_cycle():
    """No loop between packages either (data -> evaluation -> data would pass the module test)."""
    cycle = _cycle(unit_graph(_graph()))
    assert cycle is None, "package-level import cycle: " + " -> ".join(cycle or [])


# Object storage clients: only the storage module may import them
STORAGE_CLIENTS = ("pyarrow.fs", "s3fs", "fsspec", "boto3", "botocore", "aiobotocore")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (module, class, function): prose, not code."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def storage_leaks(source: str, filename: str = "<string>") -> list[str]:
    """What in ``source`` only the storage module may do: import an object-storage client
    (``pyarrow.fs``, s3fs, boto...) or name the S3 scheme in code (a string that starts with
    ``s3:`` or is ``"s3"``, an f-string that starts with ``s3://``). Prose that mentions s3:// in
    a docstring, a comment or a help text does not count. One line per finding."""
    tree = ast.parse(source, filename)
    prose = _docstrings(tree)
    found = []

    def client(name: str) -> bool:
        return any(name == c or name.startswith(c + ".") for c in STORAGE_CLIENTS)

    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if client(a.name)]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            mod = node.module or ""
            names = [f"{mod}.{a.name}" for a in node.names]
            if client(mod) or any(client(n) for n in names):
                found.append(f"{where}: from {mod} import ...")
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
        ):
            if node.value.lower().startswith("s3:") or node.value.lower() == "s3":
                found.append(f"{where}: the S3 scheme {node.value!r}")
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and str(first.value).lower().startswith("s3:"):
                found.append(f"{where}: the S3 scheme in an f-string")
    return found


def _package_and_scripts() -> list[Path]:
    return [*MODULES.values(), *sorted((ROOT / "sweeps").glob("*.py"))]


def test_only_the_storage_module_imports_an_object_store_client_or_names_s3():
    leaks = [
        leak
        for p in _package_and_scripts()
        if _rel(p) != STORAGE_MODULE
        for leak in storage_leaks(p.read_text(), _rel(p))
    ]
    assert not leaks, "only diod_ray/storage.py may do this:\n" + "\n".join(leaks)
    # the storage module itself does both (the check reads what it should)
    own = storage_leaks((ROOT / STORAGE_MODULE).read_text(), STORAGE_MODULE)
    assert any("import pyarrow.fs" in x for x in own) and any("'s3://'" in x for x in own), own


@pytest.mark.parametrize(
    "planted",
    [
        "import pyarrow.fs as pafs",
        "import pyarrow.fs",
        "from pyarrow import fs",
        "from pyarrow.fs import S3FileSystem",
        "import s3fs",
        "import boto3",
        "def f(u):\n    return u.startswith('s3://')",
        "def f(b, k):\n    return f's3://{b}/{k}'",
        "def f(scheme):\n    return scheme == 's3'",
    ],
)
def test_the_storage_check_finds_a_planted_leak(planted, tmp_path):
    """The import test fails on a planted `import pyarrow.fs` (or an s3:// string) in another
    module: planted into a copy of a real module, the copy is reported."""
    module = ROOT / "diod_ray" / "checkpoint.py"
    clean = module.read_text()
    assert storage_leaks(clean, "checkpoint.py") == []
    copy = tmp_path / "checkpoint.py"
    copy.write_text(clean + "\n\n" + planted + "\n")
    assert storage_leaks(copy.read_text(), str(copy)), planted


def test_prose_about_s3_is_not_a_leak():
    source = (
        '"""Reads s3://bucket/prefix or a path."""\n'
        "# s3://bucket in a comment\n"
        "HELP = 'local path or s3://bucket/prefix'\n"
        "import pyarrow.parquet as pq\n"
    )
    assert storage_leaks(source) == []


def test_library_modules_reach_neither_ray_nor_training():
    """Reading a checkpoint, evaluating, predicting and the method itself work without Ray: no
    chain of imports (lazy ones included) from them reaches training/, sweeps/ or the pipeline."""
    graph = _graph()
    for root in (
        "diod_ray.checkpoint",
        "diod_ray.inference",
        "diod_ray.predict",
        "diod_ray.model",
        "diod_ray.objectives",
    ):
        seen, todo = set(), [root]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        bad = sorted(m for m in seen if _rel(MODULES[m]).startswith(RAY_ALLOWED))
        assert not bad, f"{root} reaches {bad}"
