"The benchmark's plumbing (no timing is asserted): dtype choice, table layout, the step closure, the profile bins."
import math, torch
from minillm.bench import (SIZES, bench_dtype, format_table, _row, train_step_fn, interleaved, rate, llamacpp_available,
                           step_profile)
from minillm.config import MiniLLMConfig
from minillm.model import MiniLLMForCausalLM, param_table


def test_dtype_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setenv("MINILLM_CPU_BF16", "0")
    assert bench_dtype("auto", "cpu") == "fp32" and bench_dtype(None, "cpu") == "fp32"
    assert bench_dtype("bf16", "cpu") == "bf16"                  # an explicit choice always wins


def test_sizes():
    p = {r["config"]: r["params_M"] for r in param_table({k: MiniLLMConfig(**v["cfg"]) for k, v in SIZES.items()})}
    assert 90 < p["100m"] < 120 and 20 < p["default"] < 30


def test_table_has_every_column():
    rows = [_row("train", 120, 100, (110, 130), (90, 105), "x"),
            _row("decode batch 1", 90, 60, (80, 95), (50, 65), "n", 100, (90, 110))]
    tab = format_table(rows, "t")
    assert len({l.count("|") for l in tab.splitlines()[2:]}) == 1
    assert "1.20×" in tab and "0.90×" in tab and "| — |" in tab


def test_step_trains_and_rates():
    cfg = MiniLLMConfig(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=50)
    torch.manual_seed(0); m = MiniLLMForCausalLM(cfg)
    ids = torch.randint(0, 50, (2, 8))
    before = m.lm_head.weight.detach().clone()
    t = interleaved({"s": train_step_fn(m, ids, "fp32", fused=True)}, rounds=2)
    assert not torch.equal(before, m.lm_head.weight) and len(t["s"]) == 2
    assert rate(10, [1.0, 2.0, 4.0]) == (5.0, 2.5, 10.0)


def test_llamacpp_column_is_optional():
    ok, why = llamacpp_available()
    assert ok or "pip install llama-cpp-python" in why


def test_profile_bins_add_up():
    p = step_profile("ci")
    parts = sum(v for k, v in p.items() if k != "total")
    assert math.isclose(parts, p["total"], rel_tol=0.05) and p["matmul"] > 0 and p["optimizer"] > 0
