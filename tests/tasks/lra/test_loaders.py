"""The LRA file loaders (tasks.lra.images, tasks.lra.text) on small fixtures written at test time in each source's
real format: CIFAR-10 pickled batches (folder and tarball), hub parquet / save_to_disk copies, Fashion-MNIST IDX,
aclImdb folders and the AAN TSV files."""
from __future__ import annotations

import gzip
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.lra.examples import DataMissing
from tasks.lra.images import FASHION_MNIST_DIR, grayscale, load_cifar10, load_fashion_mnist
from tasks.lra.text import AAN_FILES, VOCAB_SIZE, encode_bytes, load_aan, load_imdb


def one_line_error(call, *args, match: str | None = None) -> str:
    with pytest.raises(DataMissing, match=match) as info:
        call(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


# ---- fixture writers ------------------------------------------------------------------------------------------
def write_cifar_batches(folder: Path, per_batch: int = 4, n_test: int = 4, seed: int = 0):
    """cifar-10-batches-py as the python archive holds it: pickled dicts with bytes keys; b"data" rows are the R,
    G, B planes of 32 x 32 one after another. Returns the train and test (data, labels) written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        # the archive's pickles (2009) name numpy's old module path; protocol 2 writes it as a text line
        raw = pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        (folder / name).write_bytes(raw)
        written[name] = (data, labels)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2))
    train = [written[f"data_batch_{i}"] for i in range(1, 6)]
    return (np.concatenate([d for d, _ in train]), sum((l for _, l in train), [])), written["test_batch"]


def hwc(data: np.ndarray) -> np.ndarray:
    """Reference layout by explicit indexing: pixel (y, x) channel c is byte c * 1024 + y * 32 + x of a row."""
    n = len(data)
    out = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    for c in range(3):
        for y in range(32):
            out[:, y, :, c] = data[:, c * 1024 + y * 32: c * 1024 + y * 32 + 32]
    return out


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = True, cut: int = 0) -> None:
    raw = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + array.tobytes()
    raw = raw[:len(raw) - cut]
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_fashion(folder: Path, n_train: int = 20, n_test: int = 5, compress: bool = True):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(1, 256, (n, 28, 28), dtype=np.uint8)  # no zeros: the padding is all the zeros
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, 2051, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 2049, compress)
        out[prefix] = (images, labels)
    return out


# ---- CIFAR-10 -------------------------------------------------------------------------------------------------
def check_cifar(splits, train, test):
    images, labels = train
    assert [len(splits[s][0]) for s in ("train", "val", "test")] == [18, 2, 4]  # 20 train: first 90 % / last 10 %
    for split in splits.values():
        assert split[0].shape[1:] == (32, 32, 3) and split[0].dtype == np.uint8 and split[1].dtype == np.int64
    np.testing.assert_array_equal(splits["train"][0], hwc(images[:18]))
    np.testing.assert_array_equal(splits["val"][0], hwc(images[18:]))
    np.testing.assert_array_equal(splits["test"][0], hwc(test[0]))
    np.testing.assert_array_equal(np.concatenate([splits["train"][1], splits["val"][1]]), labels)
    np.testing.assert_array_equal(splits["test"][1], test[1])
    # channel order by hand: the first image's top-left pixel is bytes 0 (R), 1024 (G), 2048 (B)
    assert splits["train"][0][0, 0, 0].tolist() == [images[0, 0], images[0, 1024], images[0, 2048]]


def test_cifar_pickle_folder_and_tarball(tmp_path):
    train, test = write_cifar_batches(tmp_path / "cifar-10-batches-py")
    check_cifar(load_cifar10("cifar10", tmp_path), train, test)
    packed = tmp_path / "packed"
    packed.mkdir()
    with tarfile.open(packed / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    check_cifar(load_cifar10("cifar10", packed), train, test)


def test_cifar_missing_or_corrupt(tmp_path):
    assert "cifar-10-batches-py" in one_line_error(load_cifar10, "cifar10", tmp_path)
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02not a pickle")
    one_line_error(load_cifar10, "cifar10", tmp_path, match="data_batch_3")
    # a pickle that would run code is refused, not executed
    marker = tmp_path / "ran"
    evil = pickle.dumps(type("Evil", (), {"__reduce__": lambda self: (os.mkdir, (str(marker),))})())
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(evil)
    one_line_error(load_cifar10, "cifar10", tmp_path, match="data_batch_3")
    assert not marker.exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"truncated tar")[:-4])
    one_line_error(load_cifar10, "cifar10", tmp_path / "bad", match="cifar-10-python.tar.gz")


def hub_dataset(train, test):
    """A DatasetDict with the features of uoft-cs/cifar10: img (Image: PNG bytes in a {bytes, path} struct), label."""
    import datasets

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})

    def split(data, labels):
        return datasets.Dataset.from_dict({"img": [Image.fromarray(im) for im in hwc(data)], "label": list(labels)},
                                          features=features)

    return datasets.DatasetDict(train=split(*train), test=split(*test))


def test_cifar_hub_copies(tmp_path):
    import datasets

    train, test = write_cifar_batches(tmp_path / "pickles")
    hub = hub_dataset(train, test)
    layout = tmp_path / "cifar10_hub" / "plain_text"  # the hub repository's layout
    layout.mkdir(parents=True)
    for split in ("train", "test"):
        hub[split].to_parquet(str(layout / f"{split}-00000-of-00001.parquet"))
    # the fixture is what datasets itself reads back as images
    back = datasets.Dataset.from_parquet(str(layout / "train-00000-of-00001.parquet"), cache_dir=str(tmp_path / "c"))
    np.testing.assert_array_equal(np.asarray(back[3]["img"]), hwc(train[0][3:4])[0])
    check_cifar(load_cifar10(f"hub:{tmp_path / 'cifar10_hub'}", tmp_path), train, test)
    check_cifar(load_cifar10("hub:cifar10_hub", tmp_path), train, test)  # a copy under data_dir
    hub.save_to_disk(str(tmp_path / "saved"))
    check_cifar(load_cifar10(f"hub:{tmp_path / 'saved'}", tmp_path), train, test)


def test_cifar_hub_offline(tmp_path):
    message = one_line_error(load_cifar10, "hub:xlstm-suite-tests/no-such-cifar", tmp_path)
    assert "HF_HUB_OFFLINE=0" in message and "cifar-10-batches-py" in message
    (tmp_path / "empty").mkdir()
    one_line_error(load_cifar10, f"hub:{tmp_path / 'empty'}", tmp_path, match="train")


def test_grayscale_matches_pillow_on_every_colour():
    every = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([every >> 16, (every >> 8) & 255, every & 255], axis=-1).astype(np.uint8).reshape(4096, 4096, 3)
    np.testing.assert_array_equal(grayscale(rgb), np.asarray(Image.fromarray(rgb).convert("L")))
    batch = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    gray = grayscale(batch)
    assert gray.shape == (3, 32, 32) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray[1], np.asarray(Image.fromarray(batch[1]).convert("L")))


# ---- Fashion-MNIST --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_idx(tmp_path, compress):
    written = write_fashion(tmp_path, compress=compress)
    splits = load_fashion_mnist(tmp_path)
    assert [len(splits[s][0]) for s in ("train", "val", "test")] == [18, 2, 5]
    images = np.concatenate([splits["train"][0], splits["val"][0]])
    assert images.shape == (20, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[:, 2:30, 2:30], written["train"][0])  # the centre is the original
    border = np.ones((32, 32), dtype=bool)
    border[2:30, 2:30] = False
    assert not images[:, border].any() and not splits["test"][0][:, border].any()
    np.testing.assert_array_equal(splits["test"][0][:, 2:30, 2:30], written["t10k"][0])
    np.testing.assert_array_equal(np.concatenate([splits["train"][1], splits["val"][1]]), written["train"][1])
    assert splits["test"][1].dtype == np.int64


def test_fashion_mnist_missing_or_corrupt(tmp_path):
    assert "apt-get install dataset-fashion-mnist" in one_line_error(load_fashion_mnist, tmp_path / "none")
    written = write_fashion(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", written["t10k"][1], 2051)  # the images' magic
    one_line_error(load_fashion_mnist, tmp_path, match="t10k-labels-idx1-ubyte.gz")
    write_fashion(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", written["train"][0], 2051, cut=100)
    one_line_error(load_fashion_mnist, tmp_path, match="train-images-idx3-ubyte.gz is truncated")
    write_fashion(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"x" * 100)[:30])
    one_line_error(load_fashion_mnist, tmp_path, match="train-labels-idx1-ubyte.gz")


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_package():
    splits = load_fashion_mnist()
    assert [len(splits[s][1]) for s in ("train", "val", "test")] == [54_000, 6_000, 10_000]


# ---- byte-level text ------------------------------------------------------------------------------------------
def test_encode_bytes():
    assert encode_bytes("é", 10).tolist() == [0xC3 + 1, 0xA9 + 1]
    assert encode_bytes("abc", 2).tolist() == [ord("a") + 1, ord("b") + 1]
    ids = encode_bytes(b"\x00\xff", 10)
    assert ids.dtype == np.uint16 and ids.tolist() == [1, 256] and VOCAB_SIZE == 257


def write_aclimdb(root: Path) -> None:
    reviews = {"train/neg": {"10_2.txt": "awful", "2_1.txt": "bad é"}, "train/pos": {"0_9.txt": "great",
               "1_8.txt": "x" * 50, "3_7.txt": "fine"}, "train/unsup": {"0_0.txt": "unlabelled"},
               "test/neg": {"0_3.txt": "meh"}, "test/pos": {"0_10.txt": "wow"}}
    for folder, files in reviews.items():
        (root / "aclImdb" / folder).mkdir(parents=True)
        for name, text in files.items():
            (root / "aclImdb" / folder / name).write_text(text, encoding="utf-8")


def decode(examples, row) -> str:
    return bytes(int(t) - 1 for t in examples.inputs[row, :examples.lengths[row]]).decode()


def test_imdb_folders(tmp_path):
    write_aclimdb(tmp_path)
    splits = load_imdb("aclImdb", tmp_path, max_length=20)
    train = splits["train"]
    # sorted names in each class (10_2 < 2_1), classes alternating, the unsup reviews ignored
    assert [decode(train, i) for i in range(len(train))] == ["awful", "great", "bad é", "x" * 20, "fine"]
    assert train.labels.tolist() == [0, 1, 0, 1, 1] and train.inputs.dtype == np.uint16
    assert train.lengths.tolist() == [5, 5, 6, 20, 4] and train.inputs.shape == (5, 20)
    assert not train.inputs[0, 5:].any()  # right padding is 0
    assert splits["val"] is splits["test"] and [decode(splits["test"], i) for i in (0, 1)] == ["meh", "wow"]
    assert "aclImdb" in one_line_error(load_imdb, "aclImdb", tmp_path / "none", 10)


def test_imdb_hub_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = tmp_path / "imdb" / "plain_text"
    layout.mkdir(parents=True)
    rows = {"train": (["neg one", "neg two", "pos é"], [0, 0, 1]), "test": (["t0", "t1"], [0, 1]),
            "unsupervised": (["u"], [-1])}
    for split, (texts, labels) in rows.items():
        pq.write_table(pa.table({"text": texts, "label": labels}), layout / f"{split}-00000-of-00001.parquet")
    splits = load_imdb("hub:imdb", tmp_path, max_length=64)
    assert [decode(splits["train"], i) for i in range(3)] == ["neg one", "pos é", "neg two"]
    assert splits["train"].labels.tolist() == [0, 1, 0] and len(splits["val"]) == 2
    assert "HF_HUB_OFFLINE=0" in one_line_error(load_imdb, "hub:xlstm-suite-tests/no-such-imdb", tmp_path, 64)


def aan_line(label: str, text1: str, text2: str, ids=("P01-1001", "W02-2002")) -> str:
    return "\t".join([label, *ids, text1, text2]) + "\n"


def write_aan(folder: Path, rows: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in AAN_FILES.items():
        (folder / name).write_text("".join(rows[split]), encoding="utf-8")


def test_aan_pairs(tmp_path):
    tsv = tmp_path / "lra_release" / "lra_release" / "tsv_data"  # the release's own layout
    write_aan(tsv, {"train": [aan_line("1.0", "cites é", "x" * 30), aan_line("0.0", "ab", "abc")],
                    "val": [aan_line("0.0", "v", "w")], "test": [aan_line("1.0", '"quoted', "t")]})
    splits = load_aan(tmp_path, max_length=16)
    train = splits["train"]
    assert train.inputs.shape == (2, 2, 16) and train.inputs.dtype == np.uint16
    assert train.lengths.tolist() == [[8, 16], [2, 3]] and train.labels.tolist() == [1, 0]
    assert train.inputs[0, 0, :8].tolist() == list(np.frombuffer("cites é".encode(), np.uint8) + 1)
    assert (train.inputs[0, 1] == ord("x") + 1).all() and not train.inputs[1, :, 3:].any()
    assert splits["val"].inputs.shape == (1, 2, 1) and splits["val"].labels.tolist() == [0]  # the eval file
    assert splits["test"].inputs[0, 0, 0] == ord('"') + 1  # no quote handling, as LRA's reader
    assert load_aan(tsv, max_length=16)["train"].lengths.tolist() == [[8, 16], [2, 3]]


def test_aan_missing_or_malformed(tmp_path):
    assert "new_aan_pairs.train.tsv" in one_line_error(load_aan, tmp_path)
    good = [aan_line("1.0", "a", "b")]
    write_aan(tmp_path, {"train": good + ["1.0\tid\tid\tonly one text\n"], "val": good, "test": good})
    one_line_error(load_aan, tmp_path, match="new_aan_pairs.train.tsv line 2: 4 tab-separated fields")
    write_aan(tmp_path, {"train": good, "val": good, "test": [aan_line("label", "a", "b")]})
    one_line_error(load_aan, tmp_path, match="new_aan_pairs.test.tsv line 1: label")
