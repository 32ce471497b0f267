"""Every notebook is a test: nbdev's runner executes it top to bottom, skipping cells flagged in `tst_flags`
(`slow` cells run too when MINILLM_SLOW=1)."""
import configparser, os
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_notebook  # renamed so that pytest does not collect it
from conftest import ROOT, run_slow

NBS = sorted(p for p in (Path(ROOT) / "nbs").glob("*.ipynb") if not p.name.startswith("_"))

def skip_flags():
    cfg = configparser.ConfigParser(); cfg.read(Path(ROOT) / "settings.ini")
    flags = cfg["DEFAULT"].get("tst_flags", "").split()
    return [f for f in flags if not (f == "slow" and run_slow())]

@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_notebook(nb):
    ok, secs = run_notebook(nb, skip_flags=skip_flags())
    assert ok, f"{nb.name} failed (see the traceback above)"
