#!/usr/bin/env bash
# Issue 7 device check, prepared for ONE call on a lent GPU machine (device tool `run`, timeout_s=420):
#   run(command="bash bench/gpu_check.sh", carry=[".venv"], timeout_s=420)
# Needs a CUDA build of torch in .venv (this repo's CI venv is CPU-only: install torch+cuda first there)
# and the shared tokenizer files (LLMTALLY_SHARED).  Writes the tables to $OUT/gpu_check.md.
# Not run yet: no GPU machine was lent to the session that wrote it.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export TIKTOKEN_CACHE_DIR="${TIKTOKEN_CACHE_DIR:-${LLMTALLY_SHARED:-../shared}/tiktoken}"
OUT="${OUT:-/tmp/llmtally-gpu-check}"; mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  python -m pytest -q tests/tokens/test_engines.py -x 2>&1 | tail -3
  timeout 150 python bench/bench_engines.py --n 6000 --device cuda
  timeout 120 python bench/bench_engines.py --n 6000 --device cuda --model gpt-4o
} 2>&1 | tee "$OUT/gpu_check.md"
