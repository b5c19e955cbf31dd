"""Tokenizers and ``python -m tasks.lm.prepare``: shard contents pinned against the tokenizer, the same bytes for any
number of workers and after a restart, the manifest, and every bad input in one line."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.lm import prepare as prep
from tasks.lm.data import DataError, TokenData
from tasks.lm.prepare import prepare
from tasks.lm.sources import SourceError, documents
from tasks.lm.tokenizers import load_tokenizer, train_bpe

ROOT = Path(__file__).resolve().parents[3]
SETS = ["RedPajamaWikipedia", "RedPajamaArXiv", "RedPajamaBook"]


def _rows(n: int, seed: int) -> list[dict]:
    """Rows in SlimPajama's format: text and meta.redpajama_set_name."""
    rng = np.random.default_rng(seed)
    words = "the cat sat on a mat while xLSTM models read long documents about memory and gates".split()
    return [{"text": " ".join(rng.choice(words, size=int(rng.integers(3, 40)))) + f" #{seed}-{i}",
             "meta": {"redpajama_set_name": SETS[i % 3]}} for i in range(n)]


def write_fixture(folder: Path) -> list[dict]:
    """One file of each format SlimPajama and friends come in; returns the rows in the order prepare reads them
    (sorted paths)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    folder.mkdir(parents=True, exist_ok=True)
    files = {"a.jsonl": _rows(5, 1), "b.jsonl.gz": _rows(4, 2), "c.jsonl.zst": _rows(6, 3), "d.parquet": _rows(3, 4)}
    for name, rows in files.items():
        text = "".join(json.dumps(r) + "\n" for r in rows).encode()
        if name.endswith(".gz"):
            text = gzip.compress(text, mtime=0)
        elif name.endswith(".zst"):
            text = zstandard.ZstdCompressor().compress(text)
        if name.endswith(".parquet"):
            pq.write_table(pa.Table.from_pylist(rows), folder / name)
        else:
            (folder / name).write_bytes(text)
    (folder / "e.txt").write_text("A plain text file is one document.")
    (folder / "ignored.csv").write_text("not read")
    return [*files["a.jsonl"], *files["b.jsonl.gz"], *files["c.jsonl.zst"], *files["d.parquet"],
            {"text": "A plain text file is one document.", "meta": {"redpajama_set_name": "e"}}]


def test_gpt2_has_the_canonical_ids_and_bytes_round_trip():
    gpt2 = load_tokenizer("gpt2")
    assert gpt2.encode_batch(["Hello world"]) == [[15496, 995]]
    assert (gpt2.vocab_size, gpt2.eot_id) == (50257, 50256)
    b = load_tokenizer("bytes")
    assert b.encode_batch(["hé"]) == [[104, 195, 169]] and b.decode([104, 195, 169]) == "hé"


def test_a_hub_tokenizer_offline_is_one_line(monkeypatch):
    from tasks.lm.tokenizers import TokenizerError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokenizerError, match="cannot load tokenizer 'hf:EleutherAI/gpt-neox-20b'") as err:
        load_tokenizer("hf:EleutherAI/gpt-neox-20b")
    assert "\n" not in str(err.value)


def test_a_trained_bpe_round_trips_and_has_an_end_of_text(tmp_path):
    path = train_bpe(["the cat sat on the mat " * 20, "memory and gates " * 20], 300, tmp_path / "tok.json")
    tok = load_tokenizer(str(path))
    assert tok.vocab_size <= 300 and tok.eot_id is not None
    ids = tok.encode_batch(["the cat sat"])[0]
    assert tok.decode(ids) == "the cat sat" and len(ids) < len("the cat sat")


@pytest.mark.parametrize("tokenizer", ["gpt2", "bytes"])
def test_shards_hold_each_document_then_end_of_text_in_input_order(tmp_path, tokenizer):
    rows = write_fixture(tmp_path / "src")
    manifest = prepare(str(tmp_path / "src"), tokenizer, tmp_path / "out", shard_tokens=97, chunk_docs=3)
    tok = load_tokenizer(tokenizer)
    expected = np.concatenate([[*ids, tok.eot_id] for ids in tok.encode_batch([r["text"] for r in rows])])
    data = TokenData(tmp_path / "out")
    assert np.array_equal(data.read(0, data.total_tokens), expected)
    raw = b"".join((tmp_path / "out" / s["file"]).read_bytes() for s in manifest["shards"])
    assert np.array_equal(np.frombuffer(raw, dtype="<u2"), expected)  # raw little-endian uint16, as documented
    assert all(s["tokens"] == 97 for s in manifest["shards"][:-1]) and manifest["total_tokens"] == len(expected)
    # sources: tokens per SlimPajama set, and each token's document source
    lengths = [len(ids) + 1 for ids in tok.encode_batch([r["text"] for r in rows])]
    names = [r["meta"]["redpajama_set_name"] for r in rows[:-1]] + ["e"]
    for name in set(names):
        assert manifest["sources"][name] == sum(n for n, s in zip(lengths, names) if s == name)
    per_token = np.repeat([manifest["source_names"].index(s) for s in names], lengths)
    assert np.array_equal(data.sources(0, data.total_tokens), per_token)
    assert manifest["tokenizer"] == {"name": tok.name, "hash": tok.hash, "vocab_size": tok.vocab_size,
                                     "eot_id": tok.eot_id}


def test_output_is_byte_identical_for_any_number_of_workers_and_runs(tmp_path):
    write_fixture(tmp_path / "src")
    outs = []
    for i, workers in enumerate((1, 2, 1)):
        prepare(str(tmp_path / "src"), "gpt2", tmp_path / f"out{i}", workers=workers, shard_tokens=50, chunk_docs=2)
        outs.append({p.name: p.read_bytes() for p in (tmp_path / f"out{i}").iterdir()})
    assert outs[0] == outs[1] == outs[2]


def test_a_killed_prepare_continues_where_it_stopped_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    write_fixture(tmp_path / "src")
    prepare(str(tmp_path / "src"), "bytes", tmp_path / "straight", shard_tokens=64, chunk_docs=2)
    real_flush, calls = prep.ShardWriter.flush, []

    def dying_flush(self, resume):
        real_flush(self, resume)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after the third shard
    monkeypatch.setattr(prep.ShardWriter, "flush", dying_flush)
    with pytest.raises(KeyboardInterrupt):
        prepare(str(tmp_path / "src"), "bytes", tmp_path / "killed", shard_tokens=64, chunk_docs=2)
    monkeypatch.setattr(prep.ShardWriter, "flush", real_flush)
    partial = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert len(partial["shards"]) == 3 and not partial["complete"]
    with pytest.raises(DataError, match="not prepared to the end"):
        TokenData(tmp_path / "killed")
    encoded = []
    tok_cls = type(load_tokenizer("bytes"))
    real_encode = tok_cls.encode_batch
    monkeypatch.setattr(tok_cls, "encode_batch", lambda self, texts: encoded.extend(texts) or real_encode(self, texts))
    prepare(str(tmp_path / "src"), "bytes", tmp_path / "killed", shard_tokens=64, chunk_docs=2)
    assert sum(len(t) for t in encoded) < sum(len(r["text"]) for r in write_fixture(tmp_path / "again"))  # skipped
    straight = {p.name: p.read_bytes() for p in (tmp_path / "straight").iterdir()}
    assert straight == {p.name: p.read_bytes() for p in (tmp_path / "killed").iterdir()}


def test_max_tokens_and_the_dtype_for_large_vocabularies(tmp_path):
    write_fixture(tmp_path / "src")
    manifest = prepare(str(tmp_path / "src"), "bytes", tmp_path / "cut", max_tokens=333, shard_tokens=100)
    assert manifest["total_tokens"] == 333 and [s["tokens"] for s in manifest["shards"]] == [100, 100, 100, 33]
    big = prep.new_manifest("x", type("T", (), {"name": "t", "hash": "h", "vocab_size": 70000, "eot_id": 69999})(),
                            10, None)
    assert big["dtype"] == "uint32"


def test_the_embedded_corpus_is_real_english_split_by_article():
    train = list(documents("embedded:wikipedia/train"))
    val = list(documents("embedded:wikipedia/validation"))
    assert (len(train), len(val)) == (93, 10) and not {d.text for d in train} & {d.text for d in val}
    assert train[0].text.startswith("Anarchism is a political philosophy")
    assert not any("{{" in d.text or "[[" in d.text or "<ref" in d.text for d in train + val)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks.lm.prepare", *args], cwd=ROOT, capture_output=True, text=True)


def test_bad_input_is_one_line(tmp_path):
    bad_json = tmp_path / "bad"
    bad_json.mkdir()
    (bad_json / "x.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    cases = [
        (["--source", str(bad_json), "--tokenizer", "bytes", "--out", str(tmp_path / "o1")], f"{bad_json}/x.jsonl:2"),
        (["--source", "cerebras/SlimPajama-627B", "--tokenizer", "bytes", "--out", str(tmp_path / "o2")],
         "Hugging Face hub"),
        (["--source", str(bad_json), "--tokenizer", "nope", "--out", str(tmp_path / "o3")], "unknown tokenizer"),
        (["--source", str(bad_json), "--tokenizer", "bytes", "--out", str(tmp_path / "o4"), "--workers", "0"],
         ">= 1"),
    ]
    corrupt = tmp_path / "zst"
    corrupt.mkdir()
    (corrupt / "y.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd not zstd data")
    cases.append((["--source", str(corrupt), "--tokenizer", "bytes", "--out", str(tmp_path / "o5")],
                  f"{corrupt}/y.jsonl.zst"))
    for args, expected in cases:
        proc = _cli(*args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    # an output folder prepared with other settings is refused, never mixed
    write_fixture(tmp_path / "src")
    prepare(str(tmp_path / "src"), "bytes", tmp_path / "o6", shard_tokens=100)
    proc = _cli("--source", str(tmp_path / "src"), "--tokenizer", "gpt2", "--out", str(tmp_path / "o6"))
    assert proc.returncode == 2 and "other settings (tokenizer" in proc.stderr


def test_a_short_or_missing_shard_is_one_line_naming_it(tmp_path):
    write_fixture(tmp_path / "src")
    prepare(str(tmp_path / "src"), "bytes", tmp_path / "out", shard_tokens=100)
    shard = tmp_path / "out" / "shard_00001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(DataError, match=f"corrupt or short shard {shard}"):
        TokenData(tmp_path / "out")
    shard.unlink()
    with pytest.raises(DataError, match="missing"):
        TokenData(tmp_path / "out")
    with pytest.raises(DataError, match="no prepared data at .*tasks.lm.prepare"):
        TokenData(tmp_path / "nothing")
    with pytest.raises(SourceError, match="holds no"):
        list(documents(str(tmp_path / "out")))
