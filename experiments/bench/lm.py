"""Language-modelling throughput, written as CSV (never timed tests).

    python -m experiments.bench.lm prepare [--source embedded:wikipedia/train] [--tokenizer gpt2] [--workers 1 2]
    python -m experiments.bench.lm train [--size w128] [--context 256] [--batch 16] [--steps 8]
    python -m experiments.bench.lm train --size 125M --context 2048 --batch 8 --precision bf16   # on a GPU
    python -m experiments.bench.lm train --models llama xlstm_1_0 --compile   # every block torch.compile'd

``prepare`` times the raw tokenizer (``encode_batch`` on the same documents in the same chunks, nothing written)
and the whole ``prepare`` pipeline (read, tokenize, shard, write) on the same text in the same run (an embedded
corpus is first written as a SlimPajama-format .jsonl.zst, the format the pipeline reads in practice); the pipeline's
overhead is 1 - pipeline tokens/s / raw tokens/s (goal: under 30 %). ``train`` times full optimizer steps (forward,
cross-entropy, backward, AdamW) of every Table 1 model; tokens/s = batch x context / median step time.
Rows append to results/lm/{prepare,train}_throughput.csv, labelled with hardware and commit.
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

from experiments.results import ROOT, commit_label, hardware

from .timing import median_seconds

OUT = ROOT / "results" / "lm"
TABLE1_MODELS = ["gpt3", "llama", "mamba", "rwkv4", "xlstm_1_0", "xlstm_7_1"]


def _append(path: Path, rows: list[dict], missing: dict | None = None) -> None:
    """Append rows; a column the file does not have yet is added, with ``missing[column]`` (or empty) in the
    rows already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = list(csv.DictReader(path.open())) if path.exists() else []
    fields = list(old[0]) if old else []
    fields += [key for key in rows[0] if key not in fields]
    old = [{key: row.get(key, (missing or {}).get(key, "")) for key in fields} for row in old]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(old + rows)


def _label() -> dict:
    return {"hardware": hardware(), "commit": commit_label()}


def as_slimpajama_file(source: str, folder: Path) -> str:
    """The documents of ``source`` as one ``.jsonl.zst`` file in SlimPajama's row format (how the real corpus
    ships), so that the pipeline is timed on its real input format rather than on the embedded XML sample."""
    import json

    import zstandard

    from tasks.lm.sources import documents

    rows = "".join(json.dumps({"text": d.text, "meta": {"redpajama_set_name": d.source}}) + "\n"
                   for d in documents(source))
    path = folder / "documents.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(rows.encode()))
    return str(path)


def bench_prepare(source: str, tokenizer_name: str, workers: list[int], chunk_docs: int = 64) -> list[dict]:
    """An embedded corpus is timed as a SlimPajama-format file written to a temporary folder."""
    if not source.startswith("embedded:"):
        return bench_prepare_file(source, tokenizer_name, workers, chunk_docs, origin=source)
    with tempfile.TemporaryDirectory() as folder:
        return bench_prepare_file(as_slimpajama_file(source, Path(folder)), tokenizer_name, workers, chunk_docs,
                                  origin=source)


def bench_prepare_file(source: str, tokenizer_name: str, workers: list[int], chunk_docs: int, origin: str
                       ) -> list[dict]:
    from tasks.lm.prepare import prepare
    from tasks.lm.sources import documents
    from tasks.lm.tokenizers import load_tokenizer

    texts = [d.text for d in documents(source)]
    tokenizer = load_tokenizer(tokenizer_name)
    start = time.perf_counter()
    tokens = sum(len(ids) + 1 for i in range(0, len(texts), chunk_docs)  # + the end-of-text token per document
                 for ids in tokenizer.encode_batch(texts[i:i + chunk_docs]))
    raw = tokens / (time.perf_counter() - start)
    rows = [{"what": "raw tokenizer", "workers": 1, "tokens": tokens, "tokens_per_s": round(raw), "overhead": 0.0}]
    for n in workers:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            manifest = prepare(source, tokenizer_name, Path(out) / "data", workers=n, chunk_docs=chunk_docs)
            rate = manifest["total_tokens"] / (time.perf_counter() - start)
        rows.append({"what": "prepare pipeline", "workers": n, "tokens": manifest["total_tokens"],
                     "tokens_per_s": round(rate), "overhead": round(1 - rate / raw, 3)})
    label = {"source": origin, "input": Path(source).name, "tokenizer": tokenizer_name, **_label()}
    return [{**row, **label} for row in rows]


def median_step_seconds(network, vocab: int, batch: int, context: int, steps: int, dtype: torch.dtype) -> float:
    """Median seconds of one full optimizer step (forward, cross-entropy, backward, AdamW) on random tokens, after
    one warm-up step (kernel compilation, allocator)."""
    import torch.nn.functional as F

    from experiments.module import weight_decay_groups

    device = next(network.parameters()).device.type
    optimizer = torch.optim.AdamW(weight_decay_groups(network, 0.1), lr=1e-4, betas=(0.9, 0.95), eps=1e-5)
    tokens = torch.randint(0, vocab, (batch, context + 1), device=device)
    data = {"tokens": tokens[:, :-1], "targets": tokens[:, 1:]}

    def step() -> None:
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            scored = network.score(data)
            loss = F.cross_entropy(scored.logits.float(), scored.targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    step()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return median_seconds(step, steps, warmup=0)


def bench_train(models: list[str], size: str, context: int, batch: int, steps: int, precision: str,
                vocab: int, compiled: bool = False) -> list[dict]:
    import xlstm
    from experiments.allocator import retain_freed_memory
    from tasks.heads import TokenClassifier
    from xlstm.components import compile_blocks
    from xlstm.sizes import paper_size

    device = "cuda" if torch.cuda.is_available() else "cpu"
    malloc = "retain" if device == "cpu" and retain_freed_memory() else "default"  # experiments.allocator
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    rows = []
    for name in models:
        spec = xlstm.MODELS[name]
        fields = {**paper_size(spec.family, size), "vocab_size": vocab, "context_length": context}
        config = spec.backbone.config_class(name=name, **spec.defaults, **fields)
        network = TokenClassifier(xlstm.build_backbone(config)).to(device)
        if compiled:
            compile_blocks(network)
        seconds = median_step_seconds(network, vocab, batch, context, steps, dtype)
        peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
        params = sum(p.numel() for p in network.parameters())
        rows.append({"model": name, "size": size, "params_m": round(params / 1e6, 3),
                     "context": context, "batch": batch, "precision": precision, "step_s": round(seconds, 4),
                     "tokens_per_s": round(batch * context / seconds), "peak_cuda_mb": round(peak, 1),
                     "malloc": malloc, "compiled": compiled, **_label()})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.lm")
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--source", default="embedded:wikipedia/train")
    p.add_argument("--tokenizer", default="gpt2")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    t = sub.add_parser("train")
    t.add_argument("--models", nargs="+", default=TABLE1_MODELS)
    t.add_argument("--size", default="w128", help="a paper size (125M, ...) or a CPU-ladder size (w64, w128, w192)")
    t.add_argument("--context", type=int, default=256)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--steps", type=int, default=8)
    t.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    t.add_argument("--vocab", type=int, default=4096, help="4096: the embedded corpus's BPE; 50304 at paper sizes")
    t.add_argument("--compile", action="store_true", help="torch.compile every residual block (model.compile)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.what == "prepare":
        rows = bench_prepare(args.source, args.tokenizer, args.workers)
        _append(OUT / "prepare_throughput.csv", rows)
    else:
        rows = bench_train(args.models, args.size, args.context, args.batch, args.steps, args.precision, args.vocab,
                           args.compile)
        _append(OUT / "train_throughput.csv", rows, missing={"malloc": "default", "compiled": False})
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
