"""Every notebook is a test: nbdev's runner executes it top to bottom, skipping cells flagged in `tst_flags`
(`slow` cells run too when MINILLM_SLOW=1). The demo models a chapter only *uses* come from the run's artefact cache
(chapter 4d); the stage a chapter teaches is trained by that chapter (MINILLM_ARTEFACTS_FRESH)."""
import configparser, os
from pathlib import Path
import pytest
from nbdev.test import test_nb as run_notebook  # renamed so that pytest does not collect it
from conftest import ARTEFACTS, ROOT, run_slow

NBS = sorted(p for p in (Path(ROOT) / "nbs").glob("*.ipynb") if not p.name.startswith("_"))
TEACHES = {"05_pretrain": "pretrain", "06_sft": "sft", "07b_train_lora": "lora", "08_dpo": "dpo",
           "09_distillation": "distill", "10_reasoning": "reason", "15_reward": "reward", "15b_grpo": "grpo"}

def skip_flags():
    cfg = configparser.ConfigParser(); cfg.read(Path(ROOT) / "settings.ini")
    flags = cfg["DEFAULT"].get("tst_flags", "").split()
    return [f for f in flags if not (f == "slow" and run_slow())]

@pytest.mark.parametrize("nb", NBS, ids=[p.stem for p in NBS])
def test_notebook(nb, monkeypatch):
    monkeypatch.setenv("MINILLM_ARTEFACTS", ARTEFACTS)
    if not os.environ.get("MINILLM_TEST_FAST"):      # tools/test.sh --fast: teaching runs come from the cache too
        monkeypatch.setenv("MINILLM_ARTEFACTS_FRESH", TEACHES.get(nb.stem, ""))
    ok, secs = run_notebook(nb, skip_flags=skip_flags())
    assert ok, f"{nb.name} failed (see the traceback above)"
