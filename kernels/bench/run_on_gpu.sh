#!/usr/bin/env bash
# One call on a lent GPU machine (torch, triton, lightning and pytest are on its image), sized to fit one
# 10-minute command: install the carried wheels (.whl/: mlstm-kernels, flashrnn, hydra-core and what they need,
# from ../shared/tools/gpu-wheels .whl mlstm-kernels flashrnn), run the gpu tests, both kernel benchmarks, the
# language-model training benchmark and a cut-down Figure 9 at 1.3B; the CSVs, the log and the speed records (one
# tar) land in $OUT. Usage from the project root:  bash kernels/bench/run_on_gpu.sh [tests|bench|speed|all]
# ("all", the default, needs about 10 minutes; a first call on a fresh machine spends more compiling Triton and
# FlashRNN's CUDA kernels, so with 15 minutes of device time run "tests" and "bench" as two calls).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
unset TRITON_INTERPRET
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))" || exit 1
PART=${1:-all}
step() { echo "=== $1 ($(date +%T))"; }
if [ "$PART" = tests ] || [ "$PART" = all ]; then
step "gpu tests"
timeout 320 python3 -m pytest tests/kernels tests/xlstm -m gpu -q -p no:cacheprovider -o addopts="" -rf 2>&1 \
  | grep -v "DEBUG    torch.__trace" | tail -60
fi
if [ "$PART" = bench ] || [ "$PART" = all ]; then
step "mLSTM kernel benchmark"
timeout 200 python3 -m kernels.bench mlstm --seq 1024 4096 16384 --dk 128 2>&1 | tail -12
step "sLSTM kernel benchmark"
timeout 150 python3 -m kernels.bench slstm --batch 16 64 2>&1 | tail -8
step "language-model training throughput, 125M, context 2048, bf16 (the mLSTM heads of 384 compile their Triton kernels first)"
timeout 150 python3 -m experiments.bench.lm train --size 125M --context 2048 --batch 8 --precision bf16 --vocab 50304 \
  --steps 3 --models llama xlstm_1_0 2>&1 | tail -4
fi
if { [ "$PART" = speed ] || [ "$PART" = all ]; } && python3 -c "import hydra" 2>/dev/null; then
  step "Figure 9 at 1.3B (cut down), xLSTM[1:0] and Llama"
  timeout 130 python3 -m experiments.train -m experiment=speed scale=paper trainer=gpu model=xlstm_1_0,llama \
    "speed.lengths=[256,1024,4096]" "speed.batch_sizes=[1,16,64]" "speed.contexts=[2048]" speed.reps=1 \
    paths.results_dir=/tmp/gpu_results paths.output_dir=/tmp/gpu_hydra 2>&1 | grep -v "^\s*$"
  tar -cf "$OUT/speed_paper_records.tar" -C /tmp/gpu_results . 2>/dev/null
fi
step "done"
cp results/kernels/mlstm_*.csv results/kernels/slstm_*.csv "$OUT/" 2>/dev/null
cp results/lm/train_throughput.csv "$OUT/lm_train_throughput_gpu.csv" 2>/dev/null
ls "$OUT"
true
