#!/usr/bin/env bash
# The GPU check: on a CUDA machine, in well under 10 minutes, run every stage for a few steps at the original default
# size (dim 512, 8 layers) with --dtype auto --compile, a 1-GPU FSDP run, the server under 8 concurrent clients, and
# the benchmark on CUDA; print tokens/s, MFU against the GPU's data-sheet peak, peak GPU memory, and any error.
# Usage: bash tools/gpu_check.sh   (results also in $OUT/gpu_check.log; OUT defaults to ./out/gpu_check)
source "$(dirname "$0")/env.sh" test
OUT="${OUT:-$MINILLM_ROOT/out/gpu_check}"; mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"; : > "$LOG"
python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || { echo "error: no CUDA device visible to torch (torch $(python -c 'import torch; print(torch.__version__)'))" | tee -a "$LOG"; exit 1; }
python -c 'import torch; print("GPU:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| bf16:", torch.cuda.is_bf16_supported())' | tee -a "$LOG"
SIZE=(--dim 512 --n_layers 8 --n_heads 8 --n_kv_heads 2)
FAST=(--dtype auto --compile --max_steps 30 --log_interval 10 --batch_size 16 --no-progress --out_dir "$OUT")
fails=0
run() {   # run NAME CMD...: keep the figures the engine prints (header, MFU peak, tokens/s, memory), count failures
  local name=$1; shift
  echo "== $name" | tee -a "$LOG"
  local t0=$SECONDS
  if "$@" > "$OUT/$name.out" 2>&1; then status=ok; else status="FAILED (exit $?)"; fails=$((fails + 1)); fi
  grep -E "dtype auto|\[train\]|\[eval\]|trainable parameters|peak GPU memory|tokens/s|error" "$OUT/$name.out" | tail -8 | tee -a "$LOG"
  python - "$OUT" "$name" <<'PY' | tee -a "$LOG"
import sys, torch, pathlib
out, name = pathlib.Path(sys.argv[1]), sys.argv[2]
for f in sorted(out.glob("*/resume.pt"), key=lambda p: p.stat().st_mtime)[-1:]:
    h = [r for r in torch.load(f, weights_only=True)["history"] if "tokens_per_s" in r]
    if h: print(f"   {f.parent.name}: {h[-1]['tokens_per_s']:.0f} tokens/s, MFU {h[-1]['mfu']:.1%}, loss {h[-1]['loss']:.3f}")
PY
  echo "   $status in $((SECONDS - t0)) s" | tee -a "$LOG"
}
run pretrain  python -m minillm.train.pretrain "${SIZE[@]}" --max_seq_len 512 "${FAST[@]}"
run sft       python -m minillm.train.sft --dim 512 --max_seq_len 512 "${FAST[@]}"
run lora      python -m minillm.train.lora --dim 512 "${FAST[@]}"
run dpo       python -m minillm.train.dpo --dim 512 "${FAST[@]}"
run reason    python -m minillm.train.reason --dim 512 "${FAST[@]}"
run distill   python -m minillm.train.distill --teacher_ckpt "$OUT/full_sft_512" --student_dim 256 --student_layer 4 "${FAST[@]}"
run fsdp_1gpu torchrun --standalone --nproc_per_node 1 -m minillm.train.pretrain --ddp --fsdp "${SIZE[@]}" --max_seq_len 512 \
              "${FAST[@]}" --save_name fsdp_512
run serve_8_clients python -m minillm.bench --serve --ckpt "$OUT/full_sft_512" --device cuda --clients 1 8
run bench     python -m minillm.bench --device cuda
echo "== $fails failed" | tee -a "$LOG"
exit $(( fails > 0 ))
