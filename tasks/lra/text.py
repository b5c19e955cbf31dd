"""Byte-level text of LRA's Text (IMDB) and Retrieval (AAN) tasks.

A text is its UTF-8 bytes, truncated to ``max_length`` bytes; token id = byte + 1, so 0 is padding and the
vocabulary has 257 ids (LRA's ``ByteTextEncoder``). Files are read as bytes and never decoded: a review or document
is exactly the bytes its file holds.

IMDB (Maas et al. 2011): train = the 25,000 training reviews; LRA has no validation split and uses the 25,000 test
reviews for both validation and test, and so do we (``val`` and ``test`` are one ``Examples``). Label 1 = positive.
Rows alternate negative / positive (each class in its source order; aclImdb: sorted file names), because both sources
store the classes in two blocks and a task's ``num_train`` takes the first rows.

AAN (Radev et al. 2013, LRA's release): ``new_aan_pairs.{train,eval,test}.tsv``, no header, five tab-separated fields
per line: label (written as a float, "1.0"), id1, id2, text1, text2, no quoting (LRA reads them with
``make_csv_dataset(field_delim="\\t", use_quote_delim=False, header=False)``); the eval file is our ``val``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .examples import DataMissing, Examples
from .hub import hub_tables, one_line

VOCAB_SIZE = 257  # 256 byte values + padding
IMDB_HUB = "stanfordnlp/imdb"
AAN_FILES = {"train": "new_aan_pairs.train.tsv", "val": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}
AAN_PLACES = (".", "tsv_data", "lra_release/tsv_data", "lra_release/lra_release/tsv_data")  # where the release unpacks
AAN_FIELDS = 5
_READ_CHUNK = 1 << 24


def encode_bytes(text: str | bytes, max_length: int) -> np.ndarray:
    """A text -> (min(bytes, max_length),) uint16 token ids: UTF-8 byte + 1."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return np.frombuffer(data[:max_length], dtype=np.uint8).astype(np.uint16) + 1


def _fill(row: np.ndarray, data: bytes) -> int:
    """Write byte + 1 of ``data`` (already cut to fit) into the start of ``row``; return the length."""
    n = len(data)
    row[:n] = np.frombuffer(data, dtype=np.uint8)
    row[:n] += 1  # in place on the uint16 row: 255 + 1 cannot wrap
    return n


def byte_rows(texts: list[bytes], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings -> (inputs (N, S) uint16 right-padded with 0, lengths (N,) int64), S = the longest kept length."""
    lengths = np.fromiter((min(len(t), max_length) for t in texts), dtype=np.int64, count=len(texts))
    inputs = np.zeros((len(texts), int(lengths.max(initial=0))), dtype=np.uint16)
    for row, (text, n) in enumerate(zip(texts, lengths)):
        _fill(inputs[row], text[:n])
    return inputs, lengths


def _alternate(labels: np.ndarray) -> np.ndarray:
    """The row order that takes one row of each class in turn, each class keeping its own order."""
    rank = np.zeros(len(labels), dtype=np.int64)  # position of each row within its class
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        rank[rows] = np.arange(len(rows))
    return np.lexsort((labels, rank))


def _examples(texts: list[bytes], labels, max_length: int) -> Examples:
    labels = np.asarray(labels, dtype=np.int64)
    order = _alternate(labels)
    inputs, lengths = byte_rows([texts[i] for i in order], max_length)
    return Examples(inputs, lengths, labels[order])


# ---- IMDB -----------------------------------------------------------------------------------------------------
def _aclimdb_folder(root: Path) -> Path:
    for folder in (root / "aclImdb", root):
        if all((folder / split / label).is_dir() for split in ("train", "test") for label in ("neg", "pos")):
            return folder
    raise DataMissing(f"IMDB not found: put aclImdb/ (aclImdb_v1.tar.gz from "
                      f"https://ai.stanford.edu/~amaas/data/sentiment/, unpacked) under {root}, or use source "
                      f"hub:{IMDB_HUB}")


def _aclimdb(root: Path, max_length: int) -> dict[str, Examples]:
    folder = _aclimdb_folder(root)
    out = {}
    for split in ("train", "test"):  # train/unsup (unlabelled) is not read
        texts, labels = [], []
        for label, name in ((0, "neg"), (1, "pos")):
            files = sorted((folder / split / name).glob("*.txt"), key=lambda f: f.name)
            if not files:
                raise DataMissing(f"no reviews (*.txt) in {folder / split / name}; unpack aclImdb_v1.tar.gz again")
            try:
                texts += [f.read_bytes()[:max_length] for f in files]
            except OSError as err:
                raise DataMissing(f"cannot read the reviews in {folder / split / name} ({one_line(err)})") from None
            labels += [label] * len(files)
        out[split] = _examples(texts, labels, max_length)
    return out


def _imdb_hub(ref: str, data_dir: Path, max_length: int) -> dict[str, Examples]:
    hint = ("set HF_HUB_OFFLINE=0 and HF_DATASETS_OFFLINE=0 to download it, or put aclImdb/ under "
            f"{data_dir} and use source aclImdb")
    out = {}
    for split, table in hub_tables(ref, data_dir, ("train", "test"), hint).items():
        if not {"text", "label"} <= set(table.column_names):
            raise DataMissing(f"{ref} {split} needs columns text and label, has {table.column_names}")
        texts = [t.encode("utf-8")[:max_length] for t in table.column("text").to_pylist()]
        out[split] = _examples(texts, table.column("label").to_pylist(), max_length)
    return out


def load_imdb(source: str, data_dir, max_length: int = 4096) -> dict[str, Examples]:
    """IMDB reviews -> {"train", "val", "test"} -> Examples(inputs (N, S) uint16, lengths (N,), labels (N,) 0/1);
    val is the test split (LRA's rule). source: ``aclImdb`` (the folders under data_dir) or ``hub:<id or local copy>``
    (e.g. hub:stanfordnlp/imdb, columns text and label)."""
    data_dir = Path(data_dir)
    if source == "aclImdb":
        splits = _aclimdb(data_dir, max_length)
    elif source.startswith("hub:"):
        splits = _imdb_hub(source[len("hub:"):], data_dir, max_length)
    else:
        raise ValueError(f"IMDB source {source!r}: expected aclImdb or hub:<id>")
    return {"train": splits["train"], "val": splits["test"], "test": splits["test"]}


# ---- AAN ------------------------------------------------------------------------------------------------------
def _aan_folder(folder: Path) -> Path:
    for place in AAN_PLACES:
        if all((folder / place / name).is_file() for name in AAN_FILES.values()):
            return folder / place
    raise DataMissing(f"AAN not found: put {', '.join(AAN_FILES.values())} (lra_release/lra_release/tsv_data/ of "
                      f"the LRA release lra_release.gz) in {folder}")


def read_aan(path: Path, max_length: int = 4000) -> Examples:
    """One AAN file -> Examples(inputs (N, 2, S) uint16, lengths (N, 2), labels (N,)). Written straight into one array
    sized by the file's line count: no per-document Python objects survive a line (the training file holds 147k
    pairs, 2.4 GB as uint16 at 4000 bytes)."""
    try:
        with open(path, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(_READ_CHUNK), b"")) + 1
            f.seek(0)
            inputs = np.zeros((lines, 2, max_length), dtype=np.uint16)  # pages are touched only where written
            lengths = np.zeros((lines, 2), dtype=np.int64)
            labels = np.zeros(lines, dtype=np.int64)
            n = 0
            for number, line in enumerate(f, 1):
                line = line.rstrip(b"\r\n")
                if not line.strip():
                    continue
                fields = line.split(b"\t")
                if len(fields) != AAN_FIELDS:
                    raise DataMissing(f"{path} line {number}: {len(fields)} tab-separated fields, expected "
                                      f"{AAN_FIELDS} (label, id1, id2, text1, text2)")
                try:
                    label = float(fields[0])
                except ValueError:
                    label = -1.0
                if label not in (0.0, 1.0):
                    raise DataMissing(f"{path} line {number}: label {fields[0][:20].decode('latin-1')!r} is not "
                                      f"0 or 1")
                labels[n] = int(label)
                for side in (0, 1):
                    lengths[n, side] = _fill(inputs[n, side], fields[3 + side][:max_length])
                n += 1
    except OSError as err:
        raise DataMissing(f"cannot read {path} ({one_line(err)})") from None
    if n == 0:
        raise DataMissing(f"{path} holds no document pairs")
    longest = int(lengths[:n].max())
    inputs = inputs[:n] if longest == max_length else np.ascontiguousarray(inputs[:n, :, :longest])
    return Examples(inputs, lengths[:n], labels[:n])


def load_aan(folder, max_length: int = 4000) -> dict[str, Examples]:
    """AAN document pairs -> {"train", "val", "test"} -> Examples(inputs (N, 2, S) uint16, both documents padded to one
    S; lengths (N, 2); labels (N,) 1 = paper 1 cites paper 2). ``folder`` holds the three TSV files, or the unpacked
    release (lra_release/lra_release/tsv_data below it)."""
    found = _aan_folder(Path(folder))
    return {split: read_aan(found / name, max_length) for split, name in AAN_FILES.items()}


__all__ = ["AAN_FILES", "IMDB_HUB", "VOCAB_SIZE", "byte_rows", "encode_bytes", "load_aan", "load_imdb", "read_aan"]
