"""Hub datasets and local copies of them, for the file-backed LRA tasks (CIFAR-10, IMDB), and the one-line form of
an error inside a ``DataMissing`` message."""
from __future__ import annotations

from pathlib import Path

from .examples import DataMissing


def one_line(err: BaseException) -> str:
    """An error as ``Type: first line`` for a DataMissing message."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def hub_tables(ref: str, data_dir: Path, splits: tuple[str, ...], hint: str) -> dict:
    """Split -> pyarrow Table of a hub dataset ``ref``. ``ref`` may name a local copy (absolute, or under data_dir):
    a ``save_to_disk`` folder, or parquet files named ``*<split>*.parquet`` anywhere below it (the hub's own layout
    is ``plain_text/<split>-00000-of-00001.parquet``). Anything else goes to ``datasets.load_dataset(ref)``, which
    needs the hub or its cache. Columns stay in Arrow storage: an image is a struct {bytes, path}."""
    local = next((p for p in (Path(ref).expanduser(), data_dir / ref) if p.is_dir()), None)
    try:
        if local is not None and not any((local / f).is_file() for f in ("dataset_dict.json", "state.json")):
            import pyarrow as pa
            import pyarrow.parquet as pq

            files = sorted(local.rglob("*.parquet"))
            tables = {}
            for split in splits:
                shards = [f for f in files if split in f.name]
                if not shards:
                    raise DataMissing(f"no *{split}*.parquet under {local}; {hint}")
                tables[split] = pa.concat_tables([pq.read_table(f) for f in shards])
            return tables
        import datasets

        found = datasets.load_from_disk(str(local)) if local is not None else datasets.load_dataset(ref)
        if not isinstance(found, datasets.DatasetDict):
            raise DataMissing(f"{ref} is a single split; save a DatasetDict with {' and '.join(splits)}")
        if missing := [s for s in splits if s not in found]:
            raise DataMissing(f"{ref} has no split {', '.join(missing)}; {hint}")
        return {s: found[s].with_format("arrow")[:] for s in splits}
    except DataMissing:
        raise
    except Exception as err:  # offline hub, unknown id, corrupt files: datasets and pyarrow raise many kinds
        where = local if local is not None else f"the hub dataset {ref}"
        raise DataMissing(f"cannot load {where} ({one_line(err)}); {hint}") from None
