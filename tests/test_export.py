"""The notebooks are the source of truth: exporting them must leave minillm/ exactly as committed."""
import hashlib, subprocess, sys
from pathlib import Path
from conftest import ROOT

def snapshot():
    lib = Path(ROOT) / "minillm"
    return {str(p.relative_to(lib)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(lib.rglob("*.py"))}

def test_export_in_sync():
    before = snapshot()
    exe = Path(sys.executable).parent / "nbdev_export"
    subprocess.run([str(exe)], cwd=ROOT, check=True)
    after = snapshot()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"nbdev_export changed {changed}: edit the notebooks, not minillm/, then export and commit both"
