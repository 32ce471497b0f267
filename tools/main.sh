#!/usr/bin/env bash
# The main job: set up, then run the MiniLLM pipeline on the shipped demo world, on CPU, in a few minutes:
#   1. train the default tokenizer from the shipped corpus (and show what it does),
#   2. pretrain a 1.6M-parameter model on data/pretrain_hq.jsonl,
#   3. fine-tune it on data/sft_mini_512.jsonl and print its answers to held-out questions,
#   4. train a LoRA identity adapter (PEFT format) on data/lora_identity.jsonl,
#   5. align it with DPO on data/dpo.jsonl,
#   6. teach it multi-digit addition from step-by-step traces (data/r1_mix_1024.jsonl),
#   7. distil the pretrained model into a student half as wide and deep (knowledge distillation),
#   8. train a reward model on the DPO pairs (data/dpo.jsonl),
#   9. reinforce the reasoning model with GRPO on problems it can check (data/rl_prompts.jsonl, exact-answer reward).
# Everything is written under ./out (override with OUT=...). Extra arguments go to every training stage.
# It ends with the effects table (what each stage changed on held-out data) and where every artefact is.
source "$(dirname "$0")/env.sh" runtime
OUT="${OUT:-$MINILLM_ROOT/out}"
recipe() { python -m minillm.registry --recipe "$1"; }   # the demo hyper-parameters live in minillm.registry
echo "== 1/9 tokenizer =="
python -m minillm.tokenizer --out_dir "$OUT/tokenizer"
echo "== 2/9 pretraining (data/pretrain_hq.jsonl) =="
python -m minillm.train.pretrain $(recipe pretrain) --out_dir "$OUT" "$@"
echo "== 3/9 supervised fine-tuning (data/sft_mini_512.jsonl) =="
python -m minillm.train.sft $(recipe sft) --out_dir "$OUT" "$@"
echo "== 4/9 LoRA identity adapter (data/lora_identity.jsonl) =="
python -m minillm.train.lora $(recipe lora) --out_dir "$OUT" "$@"
echo "== 5/9 DPO (data/dpo.jsonl) =="
python -m minillm.train.dpo $(recipe dpo) --out_dir "$OUT" "$@"
echo "== 6/9 reasoning distillation (data/r1_mix_1024.jsonl) =="
python -m minillm.train.reason $(recipe reason) --out_dir "$OUT" "$@"
echo "== 7/9 knowledge distillation: pretrain_128 teaches a 64-wide, 2-layer student (data/pretrain_hq.jsonl) =="
python -m minillm.train.distill $(recipe distill) --teacher_ckpt "$OUT/pretrain_128" \
  --data_path "$MINILLM_ROOT/data/pretrain_hq.jsonl" --eval_data_path "$MINILLM_ROOT/data/eval/pretrain_eval.jsonl" --out_dir "$OUT" "$@"
echo "== 8/9 reward model (data/dpo.jsonl) =="
python -m minillm.train.reward $(recipe reward) --out_dir "$OUT" "$@"
echo "== 9/9 GRPO: the reasoning model samples additions, an exact-answer reward scores them (data/rl_prompts.jsonl) =="
python -m minillm.train.grpo $(recipe grpo) --out_dir "$OUT" "$@"
echo "== what each stage did, measured on held-out data (python -m minillm.report) =="
python -m minillm.report --out_dir "$OUT"
cat <<EOF2
== done. Artefacts:
  tokenizer            $OUT/tokenizer
  pretrained model     $OUT/pretrain_128
  SFT model            $OUT/full_sft_128      (chat: python -m minillm.eval --ckpt $OUT/full_sft_128)
  LoRA adapter (PEFT)  $OUT/lora_identity_128
  DPO model            $OUT/rlhf_128
  reasoning model      $OUT/reason_128        (python -m minillm.eval --ckpt $OUT/reason_128 --show_think)
  distilled student    $OUT/full_dist_64
  reward model         $OUT/reward_128
  GRPO model           $OUT/grpo_128          (python -m minillm.eval --ckpt $OUT/grpo_128 --show_think)
  serve one:           python -m minillm.serve --ckpt $OUT/full_sft_128
EOF2
