"""``python -m tasks.lm.prepare --source SRC --tokenizer NAME --out DIR [--max-tokens N] [--workers N]``

Tokenizes documents (``tasks.lm.sources``) and writes them as fixed-size shards of raw little-endian tokens
(uint16, or uint32 when the vocabulary needs it) plus ``DIR/manifest.json``. Concatenating the shards in manifest
order gives, for each input document in input order, its tokens followed by the end-of-text id.

* Deterministic: documents are tokenized in chunks that workers return in order, so any ``--workers`` gives the
  same bytes, and the manifest holds no time or machine facts.
* Restartable: each shard is written to a temporary file and renamed, then the manifest records it together with
  the document and token where the next shard starts. A killed run, started again with the same command, skips the
  documents already written (without tokenizing them) and continues; its output equals an uninterrupted run's.
* Beside each shard, ``<shard>.docs.npy`` holds (start position in the shard, source id) of every document that
  starts in it, for per-source perplexity (source names in ``manifest["source_names"]``).
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import os
import sys
import time
from itertools import islice
from multiprocessing import Pool
from pathlib import Path
from typing import Iterator

import numpy as np

from . import MANIFEST
from .sources import SourceError, documents
from .tokenizers import TokenizerError, load_tokenizer

FORMAT = 1



class PrepareError(ValueError):
    """An output folder that cannot be used as asked; the message says what to do."""


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=1) + "\n").encode()


class ShardWriter:
    """Cuts the token stream into shards of ``shard_tokens`` and keeps the manifest current after each one."""

    def __init__(self, out: Path, manifest: dict):
        self.out, self.manifest = out, manifest
        self.dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
        self.size = manifest["shard_tokens"]
        self.pieces: list[np.ndarray] = []
        self.buffered = 0
        self.doc_starts: list[tuple[int, int]] = []  # (position in the shard, source id)
        self.pending_sources: dict[str, int] = {}
        self.log_every = time.time()

    def source_id(self, name: str) -> int:
        names = self.manifest["source_names"]
        if name not in names:
            names.append(name)
        return names.index(name)

    def add(self, doc: int, ids: np.ndarray, source: str, offset: int) -> None:
        """Tokens ``ids`` of document ``doc`` from its token ``offset`` on (0 = the document starts here)."""
        if offset == 0:
            self.doc_starts.append((self.buffered, self.source_id(source)))
        while len(ids):
            take = min(len(ids), self.size - self.buffered)
            self.pieces.append(ids[:take])
            self.buffered += take
            self.pending_sources[source] = self.pending_sources.get(source, 0) + take
            ids, offset = ids[take:], offset + take
            if self.buffered == self.size:
                self.flush(resume={"document": doc if len(ids) else doc + 1, "offset": offset if len(ids) else 0})

    def flush(self, resume: dict | None) -> None:
        if not self.buffered:
            self.manifest["resume"] = resume
            return
        m = self.manifest
        index = len(m["shards"])
        name = f"shard_{index:05d}.bin"
        data = np.concatenate(self.pieces).astype(self.dtype).tobytes()
        write_atomic(self.out / name, data)
        docs = np.array(self.doc_starts, dtype=np.int64).reshape(-1, 2)
        buffer = io.BytesIO()
        np.save(buffer, docs)
        write_atomic(self.out / f"{name}.docs.npy", buffer.getvalue())
        m["shards"].append({"file": name, "tokens": self.buffered, "documents": len(docs),
                            "sha256": hashlib.sha256(data).hexdigest()})
        m["total_tokens"] += self.buffered
        for source, count in self.pending_sources.items():
            m["sources"][source] = m["sources"].get(source, 0) + count
        m["resume"] = resume
        write_atomic(self.out / MANIFEST, manifest_bytes(m))
        print(f"[prepare] {name}: {self.buffered:,} tokens ({m['total_tokens']:,} in all)", file=sys.stderr, flush=True)
        self.pieces, self.buffered, self.doc_starts, self.pending_sources = [], 0, [], {}


_WORKER_TOKENIZER = None


def _init_worker(name: str) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = load_tokenizer(name)


def _encode(chunk: list[str]) -> list[list[int]]:
    return _WORKER_TOKENIZER.encode_batch(chunk)


def _chunks(source: str, skip: int, size: int) -> Iterator[tuple[int, list[str], list[str]]]:
    """(index of the chunk's first document, texts, source names), from document ``skip`` on."""
    docs = islice(documents(source), skip, None)
    index = skip
    while True:
        chunk = list(islice(docs, size))
        if not chunk:
            return
        yield index, [d.text for d in chunk], [d.source for d in chunk]
        index += len(chunk)


def new_manifest(source: str, tokenizer, shard_tokens: int, max_tokens: int | None) -> dict:
    return {"format": FORMAT, "source": source,
            "tokenizer": {"name": tokenizer.name, "hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size,
                          "eot_id": tokenizer.eot_id},
            "dtype": "uint16" if tokenizer.vocab_size <= 2**16 else "uint32", "shard_tokens": shard_tokens,
            "max_tokens": max_tokens, "total_tokens": 0, "sources": {}, "source_names": [], "shards": [],
            "complete": False, "resume": {"document": 0, "offset": 0}}


def prepare(source: str, tokenizer_name: str, out: Path, max_tokens: int | None = None, workers: int = 1,
            shard_tokens: int = 2**26, chunk_docs: int = 64) -> dict:
    tokenizer = load_tokenizer(tokenizer_name)
    out = Path(out)
    wanted = new_manifest(source, tokenizer, shard_tokens, max_tokens)
    path = out / MANIFEST
    if path.exists():
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise PrepareError(f"{path} is corrupt; delete {out} and prepare again") from None
        settings = ("format", "source", "tokenizer", "dtype", "shard_tokens", "max_tokens")
        differ = [k for k in settings if manifest.get(k) != wanted[k]]
        if differ:
            raise PrepareError(f"{out} holds data prepared with other settings ({', '.join(differ)}); use another "
                               "--out or delete it")
        if manifest["complete"]:
            print(f"[prepare] {out} is complete: {manifest['total_tokens']:,} tokens", file=sys.stderr)
            return manifest
        print(f"[prepare] continuing {out} after {len(manifest['shards'])} shards", file=sys.stderr)
    else:
        out.mkdir(parents=True, exist_ok=True)
        manifest = wanted
    writer = ShardWriter(out, manifest)
    resume = manifest["resume"]
    budget = None if max_tokens is None else max_tokens - manifest["total_tokens"]
    pending: collections.deque = collections.deque()  # (first document, source names) of the chunks in flight

    def texts() -> Iterator[list[str]]:
        for start, chunk, names in _chunks(source, resume["document"], chunk_docs):
            pending.append((start, names))
            yield chunk

    pool = Pool(workers, initializer=_init_worker, initargs=(tokenizer_name,)) if workers > 1 else None
    try:
        encoded = pool.imap(_encode, texts()) if pool else (tokenizer.encode_batch(chunk) for chunk in texts())
        for ids_list in encoded:  # in document order, whatever the number of workers
            start, names = pending.popleft()
            for doc, (ids, name) in enumerate(zip(ids_list, names), start):
                tokens = np.asarray([*ids, tokenizer.eot_id], dtype=np.int64)
                offset = resume["offset"] if doc == resume["document"] else 0
                tokens = tokens[offset:]
                if budget is not None:
                    tokens = tokens[:budget]
                    budget -= len(tokens)
                writer.add(doc, tokens, name, offset)
                if budget == 0:
                    break
            if budget == 0:
                break
    finally:
        if pool:
            pool.terminate()
    writer.flush(resume=None)
    manifest["complete"] = True
    write_atomic(path, manifest_bytes(manifest))
    print(f"[prepare] {out}: {manifest['total_tokens']:,} tokens in {len(manifest['shards'])} shards", file=sys.stderr)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.lm.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, help="local files or folders, embedded:wikipedia/<split>, or a "
                        "hub dataset id[:split]")
    parser.add_argument("--tokenizer", required=True, help="gpt2, bytes, hf:<repo id>, or the path of a "
                        "tokenizer.json")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--max-tokens", type=int, default=None, help="stop after this many tokens")
    parser.add_argument("--workers", type=int, default=1, help="tokenizing processes (the output does not change)")
    parser.add_argument("--shard-tokens", type=int, default=2**26, help="tokens per shard (default 2^26)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.shard_tokens < 1 or (args.max_tokens is not None and args.max_tokens < 1):
        print("error: --workers, --shard-tokens and --max-tokens must be >= 1", file=sys.stderr)
        return 2
    return report_errors(lambda: prepare(args.source, args.tokenizer, args.out, args.max_tokens, args.workers,
                                         args.shard_tokens))


def report_errors(action) -> int:
    """Run a command's action: a user error (bad source, tokenizer or data) ends in one line on stderr, status 2."""
    try:
        action()
    except (SourceError, TokenizerError, PrepareError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
