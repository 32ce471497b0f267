"""The package's import graph (lazy imports inside functions included) has no cycle, and the engine sits below eval,
the server and the benchmark: `minillm.trainer` imports none of them, nor any stage."""
import ast
from pathlib import Path
from conftest import ROOT

PKG = Path(ROOT) / "minillm"

def module_name(f: Path) -> str:
    parts = f.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

def imports(f: Path) -> set[str]:
    "Every minillm module `f` imports, anywhere in the file (relative imports resolved)."
    me = module_name(f).split(".")
    pkg = me if f.name == "__init__.py" else me[:-1]
    out = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("minillm")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level: base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            if not base.startswith("minillm"): continue
            for a in node.names:                      # `from minillm.train import sft` imports a module
                out.add(f"{base}.{a.name}" if (PKG.parent / (base.replace('.', '/') + f'/{a.name}.py')).is_file()
                        else base)
    return out - {module_name(f)}

def graph() -> dict[str, set[str]]:
    files = [f for f in PKG.rglob("*.py") if f.name != "_modidx.py"]
    names = {module_name(f) for f in files}
    return {module_name(f): {m for m in imports(f) if m in names} for f in files}

def reach(g, n, seen=None) -> set[str]:
    "Every module `n` imports, directly or through others."
    seen = set() if seen is None else seen
    for m in g[n]:
        if m not in seen: seen.add(m); reach(g, m, seen)
    return seen

def test_no_import_cycle():
    g, state, stack = graph(), {}, []
    def visit(n):
        state[n] = "open"; stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if m not in state: visit(m)
        state[n] = "done"; stack.pop()
    for n in sorted(g):
        if n not in state: visit(n)

def test_engine_below_its_users():
    g = graph()
    below = reach(g, "minillm.trainer")
    assert not below & {"minillm.eval", "minillm.serve", "minillm.bench", "minillm.report", "minillm.widgets",
                        "minillm.convert"}, below
    assert not any(m.startswith("minillm.train.") for m in below), below
    assert "minillm.trainer" not in reach(g, "minillm.model") and "minillm.trainer" not in reach(g, "minillm.perf")

def test_users_never_reach_the_engine():
    "eval, the server, the widget, the converter and the report use models, tokenizers, metrics and the registry only."
    g = graph()
    for user in ("minillm.eval", "minillm.serve", "minillm.widgets", "minillm.convert", "minillm.report",
                 "minillm.scores"):
        bad = {m for m in reach(g, user) if m == "minillm.trainer" or m.startswith("minillm.train.")}
        assert not bad, f"{user} reaches {sorted(bad)}"
