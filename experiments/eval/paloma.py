"""PALOMA (Magnusson et al. 2023) token perplexity per source, as in the paper's Table 4 (12 sources and their
average) and Table 9 (4 more), App. B.3: the validation split, every document in disjoint 2048-token windows
(``perplexity.document_nlls``), perplexity = exp(total NLL / total tokens) per source.

Documents come from the gated hub dataset ``allenai/paloma`` (one config per source; accept its licence and log in,
or pass ``hf_token``) or from local files in its layout: ``<dir>/<config>/val/*.jsonl[.gz]`` (also
``<dir>/<config>/val.jsonl[.gz]``), one JSON object per line with ``text`` (and ``subdomain`` where the source has
them). A folder that holds none of the 16 sources is read as one source named after the folder.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from ..config import SuiteError
from .perplexity import autocast, document_nlls, perplexity

HUB_DATASET = "allenai/paloma"

# (Table 4/9 column, hub config): the paper's 16 sources in its column order; the first 12 make Table 4's average
SOURCES: tuple[tuple[str, str], ...] = (
    ("c4", "c4_en"), ("mc4_en", "mc4"), ("wikitext_103", "wikitext_103"), ("ptb", "ptb"),
    ("redpajama", "redpajama"), ("refinedweb", "falcon-refinedweb"), ("dolma", "dolma-v1_5"),
    ("m2d2_s2orc", "m2d2_s2orc_unsplit"), ("m2d2_wikipedia", "m2d2_wikipedia_unsplit"),
    ("c4_domains", "c4_100_domains"), ("dolma_subreddits", "dolma_100_subreddits"),
    ("dolma_coding", "dolma_100_programing_languages"),
    ("twitteraae", "twitterAAE_HELM_fixed"), ("manosphere", "manosphere_meta_sep"), ("4chan", "4chan_meta_sep"),
    ("gab", "gab"))
AVERAGED = tuple(column for column, _ in SOURCES[:12])
COLUMN_OF = {config: column for column, config in SOURCES}


@dataclass
class Document:
    text: str
    subdomain: str


@dataclass
class SourceResult:
    """Sums over a source's documents; ``subdomains`` holds the same sums per subdomain."""

    documents: int = 0
    tokens: int = 0
    nll: float = 0.0
    subdomains: dict[str, list[float]] = field(default_factory=dict)  # subdomain -> [nll, tokens]

    @property
    def ppl(self) -> float:
        return perplexity(self.nll, self.tokens)

    def as_dict(self) -> dict:
        return {"ppl": self.ppl, "nll": self.nll, "tokens": self.tokens, "documents": self.documents,
                "subdomains": {k: {"ppl": perplexity(v[0], int(v[1])), "nll": v[0], "tokens": int(v[1])}
                               for k, v in sorted(self.subdomains.items())}}


def _rows(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        raise SuiteError(f"{path}:{line_no} is not JSON ({err.msg}); copy the file again") from None
    except (OSError, EOFError) as err:  # a truncated or mislabelled .gz
        raise SuiteError(f"{path} cannot be read ({err}); copy the file again") from None


def local_files(root: Path, config: str) -> list[Path]:
    folder = root / config
    files = sorted([*folder.glob("val/*.jsonl"), *folder.glob("val/*.jsonl.gz")])
    return files or sorted([*folder.glob("val.jsonl"), *folder.glob("val.jsonl.gz")])


def local_sources(root: Path) -> list[str]:
    """The hub configs present under ``root``; a folder of other sources' data gives its own names."""
    if not root.is_dir():
        raise SuiteError(f"no PALOMA folder at {root}; point paloma_dir at a copy of {HUB_DATASET} "
                         "(<dir>/<source>/val/*.jsonl.gz) or use paloma_dir=hub")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and local_files(root, p.name))
    if not names:
        raise SuiteError(f"{root} holds no source in PALOMA's layout (<source>/val/*.jsonl[.gz] with a text field)")
    return names


def documents(source: str, root: str, max_docs: int | None = None, token: str | None = None) -> list[Document]:
    """The validation documents of ``source`` (a hub config), from the hub (``root="hub"``) or a local copy."""
    if root == "hub":
        from datasets import load_dataset

        try:
            rows = load_dataset(HUB_DATASET, source, split="val", token=token)
        except Exception as err:  # gated without a token, offline, unknown config
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise SuiteError(f"cannot load {HUB_DATASET}/{source} ({reason}); it is gated: accept its licence, pass "
                             "hf_token=... (or log in), or set paloma_dir to a local copy") from None
    else:
        files = local_files(Path(root), source)
        if not files:
            raise SuiteError(f"{root} has no {source}/val/*.jsonl[.gz]; copy that source from {HUB_DATASET} or "
                             "leave it out of paloma_sources")
        rows = (row for path in files for row in _rows(path))
    docs = []
    for row in rows:
        if max_docs is not None and len(docs) >= max_docs:
            break
        if not isinstance(row.get("text"), str):
            raise SuiteError(f"a {source} row has no text field; is {root} in PALOMA's format?")
        docs.append(Document(row["text"], str(row.get("subdomain") or source)))
    return docs


def evaluate_source(model: torch.nn.Module, tokenizer, docs: list[Document], max_length: int, batch_size: int = 8,
                    precision: str = "fp32") -> SourceResult:
    """Token NLL of every document (``max_length``-token disjoint windows, the end-of-text token as prefix); the
    windows of all documents are batched together."""
    with autocast(precision, next(model.parameters()).device):
        nlls = document_nlls(model, tokenizer.encode_batch([d.text for d in docs]), max_length, tokenizer.eot_id,
                             batch_size)
    result = SourceResult()
    for doc, (nll, count) in zip(docs, nlls):
        result.documents += 1
        result.tokens += count
        result.nll += nll
        sums = result.subdomains.setdefault(doc.subdomain, [0.0, 0])
        sums[0] += nll
        sums[1] += count
    return result
