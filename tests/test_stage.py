"""The stage command line as users run it: the original MiniLLM commands and flags, a fine-tuning stage that takes
its shape and tokenizer from its checkpoint, `--dtype auto` on a CPU without native bf16, an interrupted run that is
reported as interrupted, and stage names spelled only in the registry."""
import json, os, re, signal, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import ROOT

SHAPE = ["--dim", "32", "--n_layers", "2", "--n_heads", "2", "--n_kv_heads", "1"]
FAST = ["--max_seq_len", "64", "--device", "cpu", "--no-progress", "--log_interval", "1", "--batch_size", "4"]

def env(tmp, **extra):
    return dict(os.environ, MINILLM_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1", **extra)

def stage(tmp, name, *args, extra_env=None, **kw):
    return subprocess.run([sys.executable, "-m", f"minillm.train.{name}", *args], cwd=ROOT,
                          env=env(tmp, **(extra_env or {})), capture_output=True, text=True, timeout=600, **kw)

def test_dtype_auto_follows_the_cpu(tmp_path):
    "No --dtype: a CPU whose probe says 'no native bf16' trains in float32, and says why."
    r = stage(tmp_path, "pretrain", *SHAPE, *FAST, "--max_steps", "2", "--out_dir", str(tmp_path / "o"),
              extra_env={"MINILLM_CPU_BF16": "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "dtype auto → float32: MINILLM_CPU_BF16=0" in r.stderr and "dtype float32" in r.stdout
    r = stage(tmp_path, "pretrain", *SHAPE, *FAST, "--max_steps", "1", "--out_dir", str(tmp_path / "p"),
              extra_env={"MINILLM_CPU_BF16": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    said = re.search(r"dtype auto → (\w+): .*a bf16 matmul ran at ([\d.]+)x fp32", r.stderr)
    # bf16 exactly when the timed check found it faster
    assert said and (said.group(1) == "bfloat16") == (float(said.group(2)) > 1.0), r.stderr[-1000:]
    mfu = [h["mfu"] for h in __import__("torch").load(tmp_path / "o" / "pretrain_32" / "resume.pt",
                                                      weights_only=True)["history"] if "mfu" in h]
    assert mfu and all(0 < m <= 1 for m in mfu), mfu

def test_original_chain_shape_and_tokenizer_from_the_checkpoint(tmp_path):
    out = str(tmp_path / "o")
    r = stage(tmp_path, "pretrain", *SHAPE, *FAST, "--max_steps", "4", "--out_dir", out)
    assert r.returncode == 0, r.stderr[-2000:]
    # the checkpoint carries its tokenizer
    assert (tmp_path / "o" / "pretrain_32" / "tokenizer.json").is_file()
    # the original command repeats --dim only; the rest of the shape comes from the checkpoint
    r = stage(tmp_path, "sft", "--dim", "32", *FAST, "--max_steps", "2", "--out_dir", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert ("shape and tokenizer taken from it" in r.stdout
            and (tmp_path / "o" / "full_sft_32" / "tokenizer.json").is_file())
    # no --dim at all: the only pretrain_* checkpoint is found
    r = stage(tmp_path, "sft", *FAST, "--max_steps", "1", "--out_dir", out, "--save_name", "again")
    assert r.returncode == 0, r.stderr[-2000:]
    # a shape flag that disagrees with the checkpoint names both values
    r = stage(tmp_path, "sft", "--dim", "32", "--n_layers", "8", *FAST, "--max_steps", "1", "--out_dir", out)
    assert r.returncode == 2 and "--n_layers 8 (the checkpoint has 2)" in r.stderr and "Traceback" not in r.stderr
    # a different tokenizer of the same size is refused; --resize_vocab re-maps by token string
    from minillm.tokenizer import load_tokenizer
    other = load_tokenizer(); other.add_tokens(["<x-one>"]); other.save_pretrained(str(tmp_path / "tok"))
    r = stage(tmp_path, "sft", "--dim", "32", *FAST, "--max_steps", "1", "--out_dir", out, "--tokenizer_dir",
              str(tmp_path / "tok"))
    assert r.returncode == 2 and "is not the tokenizer" in r.stderr and "--resize_vocab" in r.stderr, r.stderr[-1500:]
    r = stage(tmp_path, "sft", "--dim", "32", *FAST, "--max_steps", "1", "--out_dir", out, "--tokenizer_dir",
              str(tmp_path / "tok"), "--resize_vocab", "--save_name", "remapped")
    assert r.returncode == 0 and "6400 of 6401 rows copied" in r.stdout, r.stdout[-1500:] + r.stderr[-1500:]
    # numbers are checked when parsed, naming the flag
    for bad, says in [(["--max_seq_len", "0"], "--max_seq_len must be >= 2"),
                      (["--batch_size", "-5"], "--batch_size must be >= 1")]:
        r = stage(tmp_path, "pretrain", *SHAPE, "--out_dir", out, *bad)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr[-800:]

def test_interrupted_stage_is_not_finished(tmp_path):
    ("SIGTERM mid-run: a partial checkpoint that says so, the resume command, exit 143, no final results; "
     "--resume finishes it.")
    out = tmp_path / "o"
    args = [sys.executable, "-m", "minillm.train.sft", "--dim", "32", *FAST, "--max_steps", "300", "--save_interval",
            "2", "--out_dir", str(out)]
    r = stage(tmp_path, "pretrain", *SHAPE, *FAST, "--max_steps", "2", "--out_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    p = subprocess.Popen(args, cwd=ROOT, env=env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    marker, t0 = out / "full_sft_32" / "COMPLETE", time.time()
    while not marker.is_file() and time.time() - t0 < 300 and p.poll() is None: time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    so, se = p.communicate(timeout=300)
    assert p.returncode == 143, (p.returncode, se[-2000:])
    info = json.loads(marker.read_text())
    assert info["finished"] is False and (out / "full_sft_32" / "PARTIAL").is_file()
    assert "--resume" in se and "held-out answer accuracy" not in so and "[sft] saved" not in so
    r = subprocess.run(args + ["--resume"], cwd=ROOT, env=env(tmp_path), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "resumed from" in r.stdout, r.stderr[-2000:]
    assert json.loads(marker.read_text())["finished"] is True and not (out / "full_sft_32" / "PARTIAL").exists()

# checkpoint prefixes, bare or being formatted ("full_sft", "rlhf_...", f"lora_{name}_{dim}"); registry names that
# equal their prefix ("pretrain", "reason") are lookups, and are only flagged when formatted into a name
STAGE_NAMES = re.compile(
    r"""["'](full_sft|rlhf|full_dist)["'_]|["'](pretrain|reason|lora|grpo|reward|full_sft|rlhf|full_dist)_\{""")

def test_stage_names_only_in_the_registry():
    "Checkpoint names are spelled in minillm/registry.py only; every other module asks the registry."
    hits = []
    for f in sorted((Path(ROOT) / "minillm").rglob("*.py")):
        if f.name in ("registry.py", "_modidx.py"): continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if STAGE_NAMES.search(code) and '"""' not in line and "stage_parser(" not in code:
                hits.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)

def test_corrupt_checkpoint_is_one_line(tmp_path):
    ("A truncated model.safetensors given to --init_from, eval, serve or convert: one line naming the file, "
     "no traceback.")
    out = tmp_path / "o"
    r = stage(tmp_path, "pretrain", *SHAPE, *FAST, "--max_steps", "1", "--out_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    f = out / "pretrain_32" / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    says = f"{f}: incomplete or corrupt safetensors file"
    runs = {"--init_from": [sys.executable, "-m", "minillm.train.sft", *FAST, "--max_steps", "1", "--out_dir", str(out),
                            "--init_from", str(out / "pretrain_32")],
            "eval": [sys.executable, "-m", "minillm.eval", "--ckpt", str(out / "pretrain_32"), "--model_mode", "0",
                     "--device", "cpu"],
            "serve": [sys.executable, "-m", "minillm.serve", "--ckpt", str(out / "pretrain_32"), "--device", "cpu",
                      "--port", "0"],
            "convert": [sys.executable, "-m", "minillm.convert", "--mode", "torch2hf", "--torch_path",
                        str(out / "pretrain_32"), "--transformers_path", str(tmp_path / "hf")]}
    for what, cmd in runs.items():
        r = subprocess.run(cmd, cwd=ROOT, env=env(tmp_path), capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
        assert (r.returncode != 0 and says in r.stderr
                and "Traceback" not in r.stderr), (what, r.returncode, r.stderr[-1500:])
