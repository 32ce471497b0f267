"""Line length: `ruff check` with the project's ruff.toml (E501, 120 characters) over the repository, notebooks
included. A line too long: `python tools/fix_long_lines.py` re-wraps just that statement (then `nbdev_export`)."""
import importlib.util, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

def ruff_command() -> list[str]:
    "The ruff next to this interpreter (the project's .venv/bin/ruff), else `python -m ruff`; skip without ruff."
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists(): return [str(exe)]
    if importlib.util.find_spec("ruff") is not None: return [sys.executable, "-m", "ruff"]
    pytest.skip("ruff is not installed (a dev requirement: pip install -e '.[dev]')")

def test_line_length():
    r = subprocess.run(ruff_command() + ["check", ".", "--config", str(Path(ROOT) / "ruff.toml"), "--no-cache",
                                         "--output-format", "concise"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode in (0, 1), f"ruff did not run (exit {r.returncode}):\n{r.stdout}{r.stderr}"
    bad = [line for line in r.stdout.splitlines() if ": E" in line]       # path:row:col: E501 Line too long (n > 120)
    assert r.returncode == 0 and not bad, "lines longer than 120 characters:\n" + "\n".join(bad or [r.stdout])
