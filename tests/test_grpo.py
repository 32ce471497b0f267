"""GRPO and the reward model under real conditions: the ratio is exactly 1 at the first update (fp32 and bf16
autocast), rewards are computed before the reference and policy passes, a run stopped mid-rollout-cycle resumes bit
for bit, torchrun DDP gives the first step of one process with the same global batch, and a trained reward model
loads as a GRPO reward."""
import json, os, signal, subprocess, sys
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from conftest import ROOT

TINY = ["--max_seq_len", "64", "--dtype", "float32", "--device", "cpu", "--no-progress", "--log_interval", "1"]

def length_reward(completions, records):
    "A reward with variance on an untrained model: the completion's length in characters, mod 7."
    return [(len(c) % 7) / 7 for c in completions]

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    "A tiny random chat checkpoint (as reason_32 and full_sft_32) with the shipped tokenizer, prompts and pairs."
    from minillm.config import MiniLLMConfig
    from minillm.model import MiniLLMForCausalLM
    from minillm.tokenizer import load_tokenizer, save_tokenizer
    d = tmp_path_factory.mktemp("grpo")
    tok = load_tokenizer(); torch.manual_seed(0)
    m = MiniLLMForCausalLM(MiniLLMConfig(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, vocab_size=len(tok),
                                         max_seq_len=256))
    for name in ("reason_32", "full_sft_32"): m.save_pretrained(d / name); save_tokenizer(tok, d / name)
    with open(d / "prompts.jsonl", "w") as f:
        for i in range(32):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"What is {i} + {3 * i + 1}?"}],
                                "expected": str(4 * i + 1)}) + "\n")
    with open(d / "pairs.jsonl", "w") as f:
        for i in range(16):
            q = [{"role": "user", "content": f"Where is town {i}?"}]
            f.write(json.dumps({"chosen": q + [{"role": "assistant", "content": f"Town {i} is in Avaria."}],
                                "rejected": q + [{"role": "assistant", "content": "Figure it out yourself."}]}) + "\n")
    return d

def env(tmp):
    return dict(os.environ, MINILLM_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1", PYTHONHASHSEED="0",
                PYTHONPATH=os.pathsep.join([str(Path(ROOT) / "tests"), os.environ.get("PYTHONPATH", "")]))

def make_loss(tiny, **kw):
    from minillm.model import MiniLLMForCausalLM
    from minillm.tokenizer import load_tokenizer
    from minillm.train.grpo import GRPOLoss, PromptDataset, prompt_collate
    tok = load_tokenizer(tiny / "reason_32")
    model = MiniLLMForCausalLM.from_pretrained(tiny / "reason_32")
    ds = PromptDataset(tiny / "prompts.jsonl", tok)
    batch = prompt_collate(tok.pad_token_id)([ds[i] for i in range(0, 16, 4)])       # prompts of different lengths
    loss = GRPOLoss(tok, [("length", length_reward, 1.0)], num_generations=4, max_new_tokens=12, **kw)
    return model, loss, batch

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ratio_is_one_at_the_first_update(tiny, dtype):
    from minillm.train.grpo import completion_logits, token_logps
    import copy
    model, loss, batch = make_loss(tiny, beta=0.1)
    loss._ref = (copy.deepcopy(model).eval().requires_grad_(False),)
    model.train()
    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        out = loss(model, batch)
        roll = loss._rollouts[0]
        with torch.no_grad():       # an independent pass, eval mode, no graph: the same numbers (dropout is off)
            again = token_logps(completion_logits(model.eval(), roll.seq, roll.attention_mask,
                                                  roll.completion_mask.shape[1]),
                                roll.completions)
    assert out.metrics["ratio"] == 1.0 and out.metrics["clip_frac"] == 0.0, out.metrics
    m = roll.completion_mask.bool()
    assert torch.allclose(again[m], roll.old_logps[m], atol=1e-5 if dtype == torch.float32 else 2e-2)
    assert abs(out.metrics["kl"]) < 1e-6                          # the reference is the same model: KL 0
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

def test_rewards_before_reference_and_policy(tiny):
    import copy
    model, loss, batch = make_loss(tiny, beta=0.1)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    loss._ref = (ref,)
    events = []
    model.register_forward_hook(lambda mod, i, o: events.append("policy" if mod.training else "generate"))
    ref.register_forward_hook(lambda mod, i, o: events.append("reference"))
    def reward(completions, records):
        events.append("reward"); return length_reward(completions, records)
    loss.rewards = [("length", reward, 1.0)]
    model.train()
    loss(model, batch)
    first = {e: events.index(e) for e in set(events)}
    assert events.count("reward") == 1 and events.count("policy") == 1 and events.count("reference") == 1, events
    assert (max(i for i, e in enumerate(events) if e == "generate") < first["reward"] < first["reference"]
            < first["policy"]), events

def grpo(tmp, out, *extra, **kw):
    return subprocess.run([sys.executable, "-m", "minillm.train.grpo", *TINY, "--out_dir", str(out), *extra], cwd=ROOT,
                          env=env(tmp), capture_output=True, text=True, **kw)

GRPO_ARGS = lambda tiny: ["--init_from", str(tiny / "reason_32"), "--data_path", str(tiny / "prompts.jsonl"),
                          "--eval_data_path", "", "--reward", "test_grpo:length_reward", "--num_generations", "4",
                          "--max_new_tokens", "10", "--learning_rate", "1e-3", "--beta", "0.05"]

def test_exact_resume_mid_rollout_cycle(tiny, tmp_path, monkeypatch):
    "μ = 2: a run stopped after step 3 (its rollout half used) resumes to the same weights, bit for bit."
    monkeypatch.setenv("MINILLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(Path(ROOT) / "tests"))
    from minillm.train import grpo as g
    args = GRPO_ARGS(tiny) + TINY + ["--max_steps", "6", "--batch_size", "2", "--mu", "2"]
    assert g.main(args + ["--out_dir", str(tmp_path / "a")]) == 0
    orig = g.GRPOLoss.on_step
    def stop_after_3(self, trainer):
        orig(self, trainer)
        if trainer.step == 3: trainer._stop_signal = signal.SIGTERM
    monkeypatch.setattr(g.GRPOLoss, "on_step", stop_after_3)
    assert g.main(args + ["--out_dir", str(tmp_path / "b")]) == 128 + signal.SIGTERM
    st = torch.load(tmp_path / "b" / "grpo_32" / "resume.pt", weights_only=True)
    # the rollout of step 3 kept for step 4
    assert st["step"] == 3 and len(st["loss_state"]["_extra_state"]["rollouts"]) == 1
    monkeypatch.setattr(g.GRPOLoss, "on_step", orig)
    assert g.main(args + ["--out_dir", str(tmp_path / "b"), "--resume"]) == 0
    a, b = (load_file(str(tmp_path / "a" / "grpo_32" / "model.safetensors")),
            load_file(str(tmp_path / "b" / "grpo_32" / "model.safetensors")))
    assert (a.keys() == b.keys()
            and all(torch.equal(a[k], b[k]) for k in a)), "resumed run differs from the uninterrupted one"

def history(out):
    return torch.load(Path(out) / "grpo_32" / "resume.pt", weights_only=True)["history"]

def test_ddp_first_step_matches_single_process(tiny, tmp_path):
    common = GRPO_ARGS(tiny) + ["--max_steps", "2", "--rollout_prompts", "1"]
    single = grpo(tmp_path, tmp_path / "single", *common, "--batch_size", "4", timeout=900)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "minillm.train.grpo", "--ddp", *TINY, "--out_dir", str(tmp_path / "ddp"), *common,
                          "--batch_size", "2"],
                         cwd=ROOT, env=env(tmp_path), capture_output=True, text=True, timeout=900)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = history(tmp_path / "single")[0], history(tmp_path / "ddp")[0]
    assert a["step"] == b["step"] == 1
    # the same samples (one generate call per prompt, seeded by the prompt), the global token mean: the same step
    assert (abs(a["loss"] - b["loss"]) < 1e-6
            and abs(a["grad_norm"] - b["grad_norm"]) < 1e-4 * max(1.0, a["grad_norm"])), (a, b)
    assert a["grad_norm"] > 0

def test_reward_model_trains_saves_and_scores_grpo(tiny, tmp_path):
    from minillm.train.reward import is_reward_model, ModelReward
    r = subprocess.run([sys.executable, "-m", "minillm.train.reward", *TINY, "--init_from", str(tiny / "full_sft_32"),
                        "--data_path", str(tiny / "pairs.jsonl"), "--eval_data_path", str(tiny / "pairs.jsonl"),
                        "--max_steps", "4", "--batch_size", "4", "--learning_rate", "1e-3", "--out_dir", str(tmp_path)],
                       cwd=ROOT, env=env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "held-out pair accuracy" in r.stdout
    rm = tmp_path / "reward_32"
    assert is_reward_model(rm) and "heldout_pair_accuracy" in json.loads((rm / "reward_model.json").read_text())
    s = ModelReward(rm)(["Town 1 is in Avaria.", "Figure it out yourself."],
                        [{"messages": [{"role": "user", "content": "Where is town 1?"}]}] * 2)
    assert len(s) == 2 and s[0] != s[1]
    g = grpo(tmp_path, tmp_path, "--init_from", str(tiny / "full_sft_32"), "--data_path", str(tiny / "pairs.jsonl"),
             "--eval_data_path", "", "--reward_model", str(rm), "--num_generations", "2", "--max_new_tokens", "6",
             "--max_steps", "1", "--batch_size", "2", timeout=600)
    assert g.returncode == 0, g.stderr[-3000:]
    assert any(k.startswith("reward/reward_model:") for k in history(tmp_path)[0])

def test_bad_reward_is_one_error_line(tiny, tmp_path):
    r = grpo(tmp_path, tmp_path, "--init_from", str(tiny / "reason_32"), "--data_path", str(tiny / "prompts.jsonl"),
             "--reward", "no_such_module:f", "--max_steps", "1", timeout=300)
    assert r.returncode == 2 and "error: --reward 'no_such_module:f': cannot import it" in r.stderr, r.stderr[-2000:]
