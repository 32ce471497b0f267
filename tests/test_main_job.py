"""The README's main command runs end to end (today: train the default tokenizer and report on it)."""
import os, subprocess, sys
from pathlib import Path
from conftest import ROOT

def test_main_job(tmp_path):
    env = dict(os.environ, MINILLM_VENV=str(Path(sys.executable).parent.parent))
    out = subprocess.run(["bash", "tools/main.sh", "--out_dir", str(tmp_path / "tok")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "vocabulary: 6400 tokens" in out.stdout and "held-out zh" in out.stdout
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
