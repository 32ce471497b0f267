"""The README's main command runs end to end: tokenizer, pretraining, SFT (answers to held-out questions), LoRA, DPO,
reasoning, distillation, a reward model and GRPO, ending with the effects table. Its stages go through the artefact
cache the notebooks use: whichever runs first trains the chain, the other reuses it (same code, data and flags)."""
import os, re, subprocess, sys
from pathlib import Path
from conftest import ARTEFACTS, ROOT

def test_main_job(tmp_path):
    env = dict(os.environ, MINILLM_VENV=str(Path(sys.executable).parent.parent), OUT=str(tmp_path / "out"),
               MINILLM_CACHE=str(tmp_path / "cache"), MINILLM_ARTEFACTS=ARTEFACTS)   # shared with the notebooks
    out = subprocess.run(["bash", "tools/main.sh", "--no-progress"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=1800)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "vocabulary: 6400 tokens" in out.stdout
    for name in ("tokenizer/tokenizer.json", "pretrain_128/model.safetensors", "full_sft_128/model.safetensors",
                 "lora_identity_128/adapter_model.safetensors", "lora_identity_128/adapter_config.json",
                 "rlhf_128/model.safetensors", "reason_128/model.safetensors", "full_dist_64/model.safetensors",
                 "reward_128/reward_head.safetensors", "grpo_128/model.safetensors"):
        assert (tmp_path / "out" / name).is_file(), name
    acc = re.search(r"held-out answer accuracy: (\d+)%", out.stdout)
    assert acc and int(acc.group(1)) >= 50, out.stdout[-2000:]      # the pipeline produced a model that answers
    table = out.stdout[out.stdout.index("| stage | measured on held-out data"):]
    for stage in ("tokenizer", "pretraining", "SFT", "LoRA", "DPO", "reasoning", "reward model", "GRPO",
                  "distillation"):
        assert f"| {stage} |" in table, table                        # the effects table ends the job
