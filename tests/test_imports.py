"""Imports point one way: core <- pipeline, components, serving <- cli; and no module imports itself round a cycle.

Every import counts, module-level or inside a function: a function-level
import is a dependency all the same.
"""

import ast
import importlib
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Top-level folders and the sub-package of `fakeface` each is (setup.py's package_dir).
FOLDERS = {"fakeface": "fakeface", "pipeline": "fakeface.pipeline", "components": "fakeface.components",
           "serving": "fakeface.serving", "schemas": "fakeface.schemas"}
CORE = {"fakeface", "fakeface.features", "fakeface.catalog", "fakeface.images", "fakeface.metrics",
        "fakeface.progress", "fakeface.sample_data", "fakeface.schemas", "fakeface.file_attributes",
        "fakeface.near_duplicates", "fakeface.shortcuts"}
MIDDLE = ("fakeface.pipeline", "fakeface.components", "fakeface.serving")
CLI = "fakeface.cli"


def _modules():
    """Module name -> source path, for every module of the package."""
    found = {}
    for folder, package in FOLDERS.items():
        for root, dirs, files in os.walk(os.path.join(REPO, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not (folder == "fakeface" and root.endswith(
                os.sep + "fakeface") and d in FOLDERS)]
            for name in files:
                if not name.endswith(".py"):
                    continue
                relative = os.path.relpath(os.path.join(root, name), os.path.join(REPO, folder))[:-3]
                parts = [p for p in relative.split(os.sep) if p != "__init__"]
                found[".".join([package] + parts)] = os.path.join(root, name)
    return found


MODULES = _modules()


def _imports(module, path):
    """The fakeface modules `module` imports, anywhere in its source."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n in MODULES and n != module}


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _tier(module):
    if module in CORE:
        return 0
    if module == CLI or module.startswith(CLI + "."):
        return 2
    assert module.startswith(MIDDLE), f"{module} is in no tier"
    return 1


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module):
    importlib.import_module(module)


def test_imports_point_from_the_cli_through_the_pipeline_to_the_core():
    wrong = sorted(f"{m} imports {d}" for m, deps in GRAPH.items() for d in deps if _tier(d) > _tier(m))
    assert not wrong, "\n".join(wrong)


def test_there_is_no_import_cycle():
    state = {}
    cycles = []

    def visit(module, stack):
        state[module] = "open"
        for dep in sorted(GRAPH[module]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_the_check_sees_the_imports_it_judges():
    assert "fakeface.pipeline.config" in GRAPH["fakeface.pipeline.pipeline"]
    assert "fakeface.features" in GRAPH["fakeface.components.transform.preprocessing"]
    assert len(MODULES) > 40 and CLI in MODULES and "fakeface.schemas" in MODULES
    assert sys.modules  # the modules were importable above
