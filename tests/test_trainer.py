"""The engine under real process conditions: SIGKILL + --resume gives bitwise-identical weights, torchrun DDP
matches a single process with the same global batch, and bad data ends in one clear error line."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from safetensors.torch import load_file
from conftest import ROOT

TINY = ["--dim", "32", "--n_layers", "2", "--n_heads", "2", "--n_kv_heads", "1", "--max_seq_len", "64",
        "--dtype", "float32", "--device", "cpu", "--no-progress", "--log_interval", "1", "--learning_rate", "2e-3"]

def env(tmp):
    return dict(os.environ, MINILLM_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1", PYTHONHASHSEED="0")

def pretrain(tmp, out, *extra, **kw):
    return subprocess.run([sys.executable, "-m", "minillm.train.pretrain", *TINY, "--out_dir", str(out), *extra],
                          cwd=ROOT, env=env(tmp), capture_output=True, text=True, **kw)

def weights(out):
    return load_file(str(Path(out) / "pretrain_32" / "model.safetensors"))

def test_sigkill_resume_is_bitwise_exact(tmp_path):
    common = ["--max_steps", "24", "--save_interval", "8", "--batch_size", "4", "--dropout", "0.1"]
    r = pretrain(tmp_path, tmp_path / "a", *common, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    # the same run, killed with SIGKILL once a checkpoint at step >= 8 exists, then resumed
    out_b = tmp_path / "b"
    p = subprocess.Popen([sys.executable, "-m", "minillm.train.pretrain", *TINY, "--out_dir", str(out_b), *common],
                         cwd=ROOT, env=env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker, t0 = out_b / "pretrain_32" / "COMPLETE", time.time()
    while time.time() - t0 < 300:
        if marker.is_file() and (json.loads(marker.read_text() or "{}").get("step") or 0) >= 8: break
        if p.poll() is not None: break
        time.sleep(0.05)
    killed_at = json.loads(marker.read_text())["step"]
    p.send_signal(signal.SIGKILL); p.wait()
    assert killed_at < 24, "the run finished before it could be killed"
    r = pretrain(tmp_path, out_b, *common, "--resume", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout
    a, b = weights(tmp_path / "a"), weights(out_b)
    assert (a.keys() == b.keys()
            and all(torch.equal(a[k], b[k]) for k in a)), "resumed run differs from the uninterrupted one"

def history(out):
    st = torch.load(Path(out) / "pretrain_32" / "resume.pt", weights_only=True)
    return [h["loss"] for h in st["history"] if "loss" in h]

def test_ddp_matches_single_process(tmp_path):
    common = ["--max_steps", "8", "--eval_data_path", ""]
    single = pretrain(tmp_path, tmp_path / "single", *common, "--batch_size", "8", timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "minillm.train.pretrain", "--ddp", *TINY, "--out_dir", str(tmp_path / "ddp"), *common,
                          "--batch_size", "4"], cwd=ROOT, env=env(tmp_path), capture_output=True, text=True,
                         timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = history(tmp_path / "single"), history(tmp_path / "ddp")
    assert len(a) == len(b) == 8
    # same global batches, gradients averaged by DDP: the curves agree to float32 reduction-order noise
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)
    assert a[-1] < a[0]

def test_fsdp_matches_single_process(tmp_path):
    ("FSDP2 (--ddp --fsdp, gloo on CPU): the same curve as one process, "
     "and the gathered checkpoint has the same weights.")
    common = ["--max_steps", "8", "--eval_data_path", ""]
    single = pretrain(tmp_path, tmp_path / "single", *common, "--batch_size", "8", timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    fsdp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "minillm.train.pretrain", "--ddp", "--fsdp", *TINY, "--out_dir",
                           str(tmp_path / "fsdp"), *common, "--batch_size",
                           "4"], cwd=ROOT, env=env(tmp_path), capture_output=True, text=True,
                          timeout=600)
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    a, b = history(tmp_path / "single"), history(tmp_path / "fsdp")
    assert len(a) == len(b) == 8
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-4, (a, b)
    wa, wb = weights(tmp_path / "single"), weights(tmp_path / "fsdp")
    assert wa.keys() == wb.keys() and max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4
    st = torch.load(tmp_path / "fsdp" / "pretrain_32" / "resume.pt", weights_only=True)
    assert st["optimizer"]["state"], "the gathered optimizer state is saved for --resume"

def test_bad_data_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a fine line of text"}\n' * 3 + '{oops\n' + '{"text": "more fine text here"}\n' * 100)
    r = pretrain(tmp_path, tmp_path / "o", "--data_path", str(bad), "--eval_data_path", "", timeout=300)
    assert r.returncode == 2 and f"{bad}:4: malformed JSON" in r.stderr and "Traceback" not in r.stderr
    r = pretrain(tmp_path, tmp_path / "o", "--data_path", str(bad), "--eval_data_path", "", "--skip_bad_lines",
                 "--max_steps", "1", "--batch_size", "2", timeout=300)
    assert r.returncode == 0 and "1 malformed lines skipped" in r.stdout, r.stdout + r.stderr
    wrong = tmp_path / "wrong.jsonl"; wrong.write_text('{"content": "x"}\n')
    r = pretrain(tmp_path, tmp_path / "o", "--data_path", str(wrong), "--eval_data_path", "", timeout=300)
    assert r.returncode == 2 and "expected a 'text' string, got keys ['content']" in r.stderr
    empty = tmp_path / "empty.jsonl"; empty.write_text("")
    r = pretrain(tmp_path, tmp_path / "o", "--data_path", str(empty), "--eval_data_path", "", timeout=300)
    assert r.returncode == 2 and "no records" in r.stderr
    r = subprocess.run([sys.executable, "-m", "minillm.train.sft", *TINY, "--out_dir", str(tmp_path / "none")],
                       cwd=ROOT, env=env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no checkpoint to start from" in r.stderr
