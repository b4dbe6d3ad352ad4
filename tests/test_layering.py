"""The layout shows the design (issue 10): no import cycles, lazy or not; the device
pieces in backend/; the library changes nothing process-wide by itself."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_graph(base: Path, top: str) -> dict[str, set[str]]:
    """module -> the modules of package ``top`` it imports, at any depth of the file
    (function-level "lazy" imports count: a cycle through them is still a cycle)."""
    files = {_module_name(p, base): p for p in (base / top).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    source = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in files else source for a in node.names]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != mod and t.split(".")[0] == top:
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles among modules, ignoring edges into a package's own ``__init__`` from inside
    it (``from . import x`` in a package is how Python loads submodules)."""
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if m.startswith(n + "."):  # a submodule importing its own package: the loader's doing
                continue
            if state.get(n) == 1:
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def test_no_import_cycles_in_the_library_lazy_or_not():
    """Finding: ops/elementwise.py -> tensor.py (default dtype) and nn/module.py <->
    nn/layers.py (parametrizations) were lazy import cycles."""
    assert _cycles(_import_graph(ROOT, "microgradnn")) == []


def test_no_import_cycles_in_the_cli():
    """Finding: cli/mgnn/* imported app.py for the exit codes, which imports them."""
    assert _cycles(_import_graph(ROOT / "cli", "mgnn")) == []


def test_the_library_never_imports_the_cli():
    graph = _import_graph(ROOT, "microgradnn")
    text = " ".join(p.read_text(encoding="utf-8") for p in (ROOT / "microgradnn").rglob("*.py"))
    assert "import mgnn" not in text and "from mgnn" not in text and graph


def test_one_place_moves_data_to_the_host_and_makes_generators():
    """Finding: seven private _host helpers; generators built by branching on the device
    name in tensor.py."""
    sources = {p: p.read_text(encoding="utf-8") for p in (ROOT / "microgradnn").rglob("*.py")}
    assert [str(p) for p, s in sources.items() if "def _host(" in s or "def _to_numpy(" in s] == []
    tensor_py = sources[ROOT / "microgradnn" / "tensor.py"]
    assert "XORWOW" not in tensor_py and "PCG64" not in tensor_py


def test_importing_and_using_the_library_leaves_the_allocator_alone():
    """Finding: the CPU backend called glibc's mallopt when it was first created."""
    code = textwrap.dedent("""
        import ctypes
        calls = []
        real = ctypes.CDLL
        class Spy:
            def __init__(self, *a, **k):
                self._lib = real(*a, **k)
            def __getattr__(self, name):
                if name == "mallopt":
                    def mallopt(*args):
                        calls.append(args)
                        return 1
                    return mallopt
                return getattr(self._lib, name)
        ctypes.CDLL = Spy
        import microgradnn as mg
        x = mg.randn(64, 64, requires_grad=True)
        (mg.nn.functional.gelu(x @ x).sum()).backward()
        mg.nn.LSTM(4, 8)(mg.randn(3, 2, 4))
        print("library", len(calls))
        mg.backend.tune_allocator()
        print("opt-in", len(calls))
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split() for line in out.stdout.splitlines())
    assert lines["library"] == "0"
    if sys.platform.startswith("linux"):
        assert int(lines["opt-in"]) == 2
