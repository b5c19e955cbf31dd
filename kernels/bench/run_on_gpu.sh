#!/usr/bin/env bash
# One call on a lent GPU machine (torch, triton and pytest are on its image): install the carried wheels
# (.whl/: mlstm-kernels, flashrnn and what they need, downloaded beforehand for the GPU image), run the kernels'
# gpu tests, run both benchmarks, and leave the CSVs in $OUT. Usage from the project root:  bash kernels/bench/run_on_gpu.sh
set -uo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
unset TRITON_INTERPRET
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))" || exit 1
timeout 300 python3 -m pytest tests/kernels tests/xlstm -m gpu -q -p no:cacheprovider -o addopts="" 2>&1 | tail -25
timeout 300 python3 -m kernels.bench mlstm 2>&1 | tail -5
timeout 200 python3 -m kernels.bench slstm --batch 16 64 256 2>&1 | tail -5
# language models: training tokens/s of the 125M models at context 2048 (bf16, full optimizer steps)
timeout 240 python3 -m experiments.bench.lm train --size 125M --context 2048 --batch 8 --precision bf16 --vocab 50304 --steps 5 2>&1 | tail -8
# Figure 9 at 1.3B (bf16) for xLSTM[1:0] and Llama, cut to fit the time (needs hydra-core/omegaconf carried as wheels:
# ../shared/tools/gpu-wheels .whl hydra-core); the records land in $OUT/results/speed/paper
if python3 -c "import hydra" 2>/dev/null; then
  timeout 300 python3 -m experiments.train experiment=speed scale=paper trainer=gpu model=xlstm_1_0,llama \
    "speed.lengths=[256,1024,4096]" "speed.batch_sizes=[1,16,64,256]" "speed.contexts=[2048,8192]" speed.reps=2 \
    paths.results_dir="${OUT:-results}/results" 2>&1 | grep -v "^\s*$" | tail -8
fi
mkdir -p "${OUT:-results/kernels}" && cp results/kernels/mlstm_*.csv results/kernels/slstm_*.csv "${OUT:-results/kernels}/" 2>/dev/null
cp results/lm/train_throughput.csv "${OUT:-results/kernels}/lm_train_throughput_gpu.csv" 2>/dev/null
true
