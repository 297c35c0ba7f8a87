"""The shape of tasks/ (its __init__.py): one package per stage or concern, each importing only what its
docstring allows, no import cycles, and no two modules with one name unless they are one idea in two layers."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks.crawl", "tasks.clean", "tasks.corpus", "tasks.tokens", "tasks.instances", "tasks.pretrain",
            "tasks.evaluate", "tasks.sweep")

# Project modules a package may import besides its own (a prefix allows everything under it), as each
# package's docstring says; every package may raise tasks.errors.InputError, and the stages check their resumable
# pieces with tasks.pieces. The seams at the top of tasks/ (config, stages) import the packages, not the reverse.
ALLOWED_IMPORTS = {
    "tasks.text": (),
    "tasks.debian": (),
    "tasks.errors": ("model.errors",),
    "tasks.pieces": ("tasks.artifacts",),
    "tasks.crawl": ("tasks.clean.charset", "tasks.clean.extract", "tasks.errors", "tasks.pieces"),
    "tasks.clean": ("tasks.text", "tasks.tokens.sentences", "tasks.errors"),
    "tasks.corpus": ("tasks.crawl", "tasks.clean", "tasks.parallel", "tasks.artifacts", "tasks.errors", "tasks.pieces",
                     "tasks.debian"),
    "tasks.tokens": ("tasks.text", "tasks.parallel", "tasks.errors", "tasks.pieces"),
    "tasks.instances": ("tasks.tokens", "tasks.parallel", "tasks.artifacts", "tasks.errors", "tasks.pieces"),
    "tasks.pretrain": ("model", "tasks.errors"),
    # hf_datasets: the one place that switches Hugging Face offline
    "tasks.evaluate": ("model", "tasks.text", "tasks.debian", "tasks.parallel", "tasks.corpus.hf_datasets",
                       "tasks.errors"),
    "tasks.sweep": ("tasks.config", "tasks.stages", "tasks.artifacts", "tasks.errors"),
    "model": (),
}
# Outside libraries a package must not load, checked in a fresh interpreter: the data packages run
# without orchestration, tracking or torch (a shard worker would pay ~5 CPU-s and 650 MB to import it).
FORBIDDEN_LIBRARIES = {
    "tasks.crawl": ("prefect", "mlflow", "torch"),
    "tasks.clean": ("prefect", "mlflow", "torch"),
    "tasks.corpus": ("prefect", "mlflow", "torch"),
    "tasks.tokens": ("prefect", "mlflow", "torch"),
    "tasks.instances": ("prefect", "mlflow", "torch"),
    "tasks.pretrain": ("prefect", "mlflow"),
    "tasks.evaluate": ("prefect", "mlflow", "torch"),  # torch is imported where a model is built or read
    "model": ("prefect", "mlflow"),
    "tasks.sweep": ("prefect", "mlflow", "torch"),
    # loading and checking a config is every command's first step: no orchestration, no deep learning
    "tasks.config": ("prefect", "mlflow", "torch", "transformers", "numba", "trafilatura", "py3langid"),
    # the command line's own import (`pretrainflow --help`, and every shard worker's re-import of the entry
    # point): the config classes and every library load in the commands that use them
    "flows.cli": ("prefect", "mlflow", "torch", "transformers", "numba", "trafilatura", "py3langid", "numpy",
                  "pyarrow", "pydantic"),
}
# Names two modules may share: one idea in two layers, each saying so in its docstring's first line.
TWIN_NAMES = {
    "config": "tasks/config.py composes the stage configs of tasks/corpus/, tasks/crawl/ and model/",
    "corpus": "flows/corpus.py runs the stage in tasks/corpus/ as a Prefect flow",
    "tokens": "flows/tokens.py runs the stage in tasks/tokens/ as a Prefect flow",
    "instances": "flows/instances.py runs the stage in tasks/instances/ as a Prefect flow",
    "pretrain": "flows/pretrain.py runs model/ and tasks/pretrain/ as a Prefect flow",
    "evaluate": "flows/evaluate.py runs the stage in tasks/evaluate/ as a Prefect flow",
    "sweep": "flows/sweep.py runs the sweep planned in tasks/sweep/ as a Prefect flow",
    "errors": "model/errors.py holds model/'s users' errors, which tasks/errors.py tells apart from bugs",
}


def _modules() -> dict[str, Path]:
    """Every module and package of tasks/, flows/ and model/ by dotted name."""
    modules = {}
    for path in sorted([*REPO.glob("tasks/**/*.py"), *REPO.glob("flows/**/*.py"), *REPO.glob("model/**/*.py")]):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules `path` imports anywhere in it (functions and TYPE_CHECKING blocks included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def _package_of(module: str) -> str:
    for package in (*PACKAGES, "tasks.text", "tasks.errors", "model"):
        if module == package or module.startswith(package + "."):
            return package
    return module


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    assert cycles == []


def test_packages_import_only_what_their_docstring_allows():
    modules = _modules()
    stray = []
    for name, path in modules.items():
        package = _package_of(name)
        if package not in ALLOWED_IMPORTS:
            continue
        for target in _imports(path, modules):
            allowed = (package, *ALLOWED_IMPORTS[package])
            if not any(target == prefix or target.startswith(prefix + ".") for prefix in allowed):
                stray.append(f"{name} imports {target}")
    assert stray == []


@pytest.mark.parametrize("package", sorted(FORBIDDEN_LIBRARIES))
def test_package_imports_no_orchestration_in_a_fresh_interpreter(package: str):
    """Import every module of the package alone: Prefect and MLflow (and torch for data stages) stay unloaded."""
    watched = sorted({library for libraries in FORBIDDEN_LIBRARIES.values() for library in libraries})
    script = (
        "import importlib, json, pkgutil, sys\n"
        f"package = importlib.import_module({package!r})\n"
        "for info in pkgutil.walk_packages(getattr(package, '__path__', []), package.__name__ + '.'):\n"
        "    importlib.import_module(info.name)\n"
        f"print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] in {watched!r}\n"
        "                        or name.startswith(('tasks', 'model', 'flows')))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.splitlines()[-1])
    assert package in loaded and len(loaded) > 1  # the walk did import the package's modules
    assert [name for name in loaded if name.split(".")[0] in FORBIDDEN_LIBRARIES[package]] == []


def test_every_package_says_what_it_does_and_must_not_import():
    for package in PACKAGES:
        doc = ast.get_docstring(ast.parse((REPO / package.replace(".", "/") / "__init__.py").read_text()))
        assert doc and "Must not import" in doc, package


def test_module_names_are_unique_except_twins_in_two_layers():
    names = Counter(name.rsplit(".", 1)[-1] for name in _modules() if "." in name)
    assert {name for name, count in names.items() if count > 1} == set(TWIN_NAMES)
