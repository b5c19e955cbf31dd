"""Documents for ``python -m tasks.lm.prepare``: (text, source name) pairs, in a fixed order.

* Local files or folders (folders are read recursively, in sorted path order): ``.jsonl``, ``.jsonl.gz``,
  ``.jsonl.zst`` (SlimPajama's own format) and ``.parquet`` hold one JSON row per document with a ``text`` field;
  SlimPajama rows name their source in ``meta.redpajama_set_name``. A ``.txt`` file is one document.
* ``embedded:wikipedia/train`` and ``embedded:wikipedia/validation``: 93 and 10 English Wikipedia articles (2016,
  CC BY-SA) from the sample that the ``gensim`` wheel ships (the lm extra installs it), wiki markup stripped; every
  tenth article is validation.
* Anything else is a Hugging Face hub dataset id, streamed (``cerebras/SlimPajama-627B`` or ``id:split``); offline,
  it fails in one line.
"""
from __future__ import annotations

import bz2
import gzip
import html
import importlib.util
import io
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".parquet", ".txt")


class SourceError(ValueError):
    """Input that cannot be read; the message names the file or source and what to do."""


@dataclass(frozen=True)
class Document:
    text: str
    source: str  # e.g. "RedPajamaWikipedia"; the input's own name when rows do not say


def documents(source: str) -> Iterator[Document]:
    if source.startswith("embedded:"):
        yield from embedded(source.removeprefix("embedded:"))
        return
    path = Path(source)
    if path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.name.endswith(SUFFIXES))
        if not files:
            raise SourceError(f"{path} holds no {', '.join(SUFFIXES)} files")
        for file in files:
            yield from read_file(file)
        return
    yield from hub(source)


def _row_document(row: dict, where: str, default_source: str) -> Document:
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise SourceError(f"{where}: a row without a text field")
    meta = row.get("meta") or {}
    name = meta.get("redpajama_set_name") if isinstance(meta, dict) else None
    return Document(row["text"], name or default_source)


def _json_lines(stream: io.TextIOBase, file: Path) -> Iterator[Document]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SourceError(f"{file}:{number}: not a JSON line ({err.msg}); fix or remove the file") from None
        yield _row_document(row, f"{file}:{number}", file.name.split(".")[0])


def read_file(file: Path) -> Iterator[Document]:
    name = file.name
    try:
        if name.endswith(".txt"):
            yield Document(file.read_text(encoding="utf-8"), file.stem)
        elif name.endswith(".jsonl"):
            with file.open(encoding="utf-8") as f:
                yield from _json_lines(f, file)
        elif name.endswith(".jsonl.gz"):
            with gzip.open(file, "rt", encoding="utf-8") as f:
                yield from _json_lines(f, file)
        elif name.endswith(".jsonl.zst"):
            try:
                import zstandard
            except ImportError:
                raise SourceError(f"{file}: reading .zst needs zstandard: pip install -e '.[lm]'") from None
            with file.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
                yield from _json_lines(io.TextIOWrapper(reader, encoding="utf-8"), file)
        elif name.endswith(".parquet"):
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(file).iter_batches(batch_size=1024):
                for i, row in enumerate(batch.to_pylist()):
                    yield _row_document(row, f"{file} row {i}", file.name.split(".")[0])
        else:
            raise SourceError(f"{file}: unsupported file type; use one of {', '.join(SUFFIXES)}")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise SourceError(f"{file}: cannot be read ({err}); re-download or remove it") from None
    except Exception as err:  # zstandard and pyarrow raise their own types for corrupt files
        if isinstance(err, SourceError):
            raise
        raise SourceError(f"{file}: corrupt ({type(err).__name__}: {str(err).splitlines()[0]}); re-download or "
                          "remove it") from None


def hub(source: str) -> Iterator[Document]:
    dataset, _, split = source.partition(":")
    try:
        import datasets

        stream = datasets.load_dataset(dataset, split=split or "train", streaming=True)
        for row in stream:
            yield _row_document(row, f"{dataset} row", dataset.split("/")[-1])
    except SourceError:
        raise
    except Exception as err:  # offline mode, no network, unknown dataset: all end the same way
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SourceError(f"cannot stream {source!r} from the Hugging Face hub ({first}); without network, "
                          "download the files and pass their folder as --source") from None


# ---- the embedded corpus ------------------------------------------------------------------------------------------

WIKI_SAMPLE = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def _wiki_sample() -> Path:
    spec = importlib.util.find_spec("gensim")
    if spec is None or spec.origin is None:
        raise SourceError("the embedded corpus comes with the lm extra (the gensim wheel holds it): "
                          "pip install -e '.[lm]'")
    return Path(spec.origin).parent / WIKI_SAMPLE


def strip_wiki_markup(text: str) -> str:
    """Wikitext -> plain prose: drop references, templates, tables, files, comments and tags; keep link labels
    and headings' words."""
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<ref[^>/]*/>", "", text)
    text = re.sub(r"<ref[^>]*>.*?</ref>", "", text, flags=re.S)
    while True:  # innermost templates first, until none is left
        stripped = re.sub(r"\{\{[^{}]*\}\}", "", text)
        stripped = re.sub(r"\{\|[^{}]*?\|\}", "", stripped, flags=re.S)  # tables
        if stripped == text:
            break
        text = stripped
    text = re.sub(r"\[\[(?:File|Image|Category):(?:[^\[\]]|\[\[[^\]]*\]\])*\]\]", "", text)
    text = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", text)  # [[target|label]] -> label
    text = re.sub(r"\[https?://\S+ ([^\]]*)\]", r"\1", text)  # [url label] -> label
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"'{2,}", "", text)
    text = re.sub(r"^=+\s*(.*?)\s*=+\s*$", r"\1", text, flags=re.M)
    text = re.sub(r"\{\{|\}\}|\[\[|\]\]", "", text)  # what is left of templates and links that nest
    lines = [line.strip() for line in text.splitlines()]
    keep = (line for line in lines if line and not line.startswith(("*", "|", "!", ":", ";")) and "thumb|" not in line)
    return "\n".join(keep).strip()


def wiki_articles() -> list[str]:
    """The articles of the embedded sample, in file order (redirects and non-article pages left out)."""
    raw = bz2.decompress(_wiki_sample().read_bytes())
    articles = []
    for _, element in ET.iterparse(io.BytesIO(raw)):
        if not element.tag.endswith("}page"):
            continue
        ns = element.find("{*}ns")
        body = element.find("{*}revision/{*}text")
        text = body.text if body is not None and body.text else ""
        if ns is not None and ns.text == "0" and not text.lstrip().upper().startswith("#REDIRECT"):
            article = strip_wiki_markup(html.unescape(text))
            if len(article) > 200:
                articles.append(article)
        element.clear()
    return articles


def embedded(name: str) -> Iterator[Document]:
    corpus, _, split = name.partition("/")
    if corpus != "wikipedia" or split not in ("train", "validation"):
        raise SourceError(f"unknown embedded corpus {name!r}; use embedded:wikipedia/train or "
                          "embedded:wikipedia/validation")
    for i, article in enumerate(wiki_articles()):
        if (i % 10 == 9) == (split == "validation"):
            yield Document(article, "wikipedia")
