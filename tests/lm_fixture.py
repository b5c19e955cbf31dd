"""A prepared language-modelling data folder from the SlimPajama-format fixture: ``lm_local`` (a 300-token BPE
trained on the fixture, as ``python -m tasks.lm.embedded`` does on its corpus) and ``slimpajama`` (GPT-2 BPE), each
with train and validation shards, under one ``paths.data_dir``."""
from __future__ import annotations

from pathlib import Path

from tasks.lm.prepare import prepare
from tasks.lm.sources import documents
from tasks.lm.tokenizers import train_bpe

from .tasks.lm.test_prepare import write_fixture


def prepare_fixture(data_dir: Path, copies: int = 3) -> Path:
    """``copies`` copies of the fixture files make the corpus long enough for the smoke grids' windows."""
    source = data_dir / "src"
    for copy in range(copies):
        write_fixture(source / f"part{copy}")
    tokenizer = train_bpe((d.text for d in documents(str(source))), 300, data_dir / "lm_local" / "tokenizer.json")
    for name, tok in (("lm_local", str(tokenizer)), ("slimpajama", "gpt2")):
        for split in ("train", "validation"):
            prepare(str(source), tok, data_dir / name / split)
    return data_dir
