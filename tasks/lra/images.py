"""Image sources of LRA's Image task: CIFAR-10 (the python-pickle archive, or the hub dataset ``uoft-cs/cifar10`` and
local copies of it) and the offline stand-in Fashion-MNIST (IDX files, as Debian's ``dataset-fashion-mnist`` installs).

Splits follow LRA (``tfds`` ``train[:90%]`` / ``train[90%:]`` / ``test``): train = the first 90 % of the official
training set (CIFAR-10: 45,000; Fashion-MNIST: 54,000), val = its last 10 %, test = the official test set. The
training rows keep the source's order (the pickle archive: data_batch_1 .. 5); tfds stores its copy in a shuffled
order of its own, so LRA's exact val images are not reproduced, only the sizes and the rule.

Grayscale is PIL's ``convert("L")`` (ITU-R 601-2 luma in fixed point), bit for bit. LRA's TF pipeline used
``tf.image.rgb_to_grayscale``, whose float rounding puts some pixels one level off PIL's.
"""
from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from .examples import DataMissing
from .hub import hub_tables, one_line

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TARBALL = "cifar-10-python.tar.gz"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_HUB = "uoft-cs/cifar10"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # where `apt-get install dataset-fashion-mnist` puts it
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IDX_MAGIC = {3: 2051, 1: 2049}  # unsigned bytes (0x08) with 3 dims (images) or 1 dim (labels)
SIDE = 32


def split_lra(images: np.ndarray, labels: np.ndarray, test: tuple[np.ndarray, np.ndarray]) -> dict:
    """Official train/test -> LRA's train (first 90 %) / val (last 10 %) / test."""
    cut = len(labels) * 9 // 10
    labels = np.asarray(labels, dtype=np.int64)
    return {"train": (images[:cut], labels[:cut]), "val": (images[cut:], labels[cut:]),
            "test": (test[0], np.asarray(test[1], dtype=np.int64))}


def grayscale(images: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint8 luma exactly as PIL's ``convert("L")``: (19595 R + 38470 G + 7471 B +
    2^15) >> 16, the fixed-point form of 0.299 R + 0.587 G + 0.114 B rounded half up."""
    luma = images[..., 0] * np.uint32(19595)  # uint32 planes, one at a time: no (..., 3) uint32 copy
    luma += images[..., 1] * np.uint32(38470)
    luma += images[..., 2] * np.uint32(7471)
    luma += np.uint32(0x8000)
    return (luma >> 16).astype(np.uint8)


# ---- CIFAR-10: the python-pickle archive ----------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """The CIFAR batches hold a dict of bytes, lists and one numpy array: refuse any other global, so a tampered
    download cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}:
            return super().find_class(module, name)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # this numpy's _reconstruct, without the old module path
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")


def _cifar_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (images (N, 32, 32, 3) uint8 HWC, labels (N,)). Rows of b"data" are 3072 bytes: the R
    plane, then G, then B, each 32 x 32 row-major."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        images = data.reshape(len(data), 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    except Exception as err:  # unpickling, missing keys, wrong sizes: all "this file is not a CIFAR batch"
        raise DataMissing(f"CIFAR-10 batch {name} is unreadable ({one_line(err)}); fetch "
                          f"{CIFAR_TARBALL} again") from None
    if len(labels) != len(images):
        raise DataMissing(f"CIFAR-10 batch {name} has {len(images)} images but {len(labels)} labels")
    return np.ascontiguousarray(images), labels


def _read_batches(data_dir: Path) -> dict[str, bytes]:
    """Batch name -> pickled bytes, from <data_dir>/cifar-10-batches-py, <data_dir> itself, or the tarball."""
    names = (*CIFAR_TRAIN, "test_batch")
    for folder in (data_dir / CIFAR_FOLDER, data_dir):
        if all((folder / n).is_file() for n in names):
            try:
                return {n: (folder / n).read_bytes() for n in names}
            except OSError as err:
                raise DataMissing(f"cannot read CIFAR-10 in {folder} ({one_line(err)})") from None
    tarball = data_dir / CIFAR_TARBALL
    if not tarball.is_file():
        raise DataMissing(f"CIFAR-10 not found: put {CIFAR_FOLDER}/ or {CIFAR_TARBALL} (the python version from "
                          f"https://www.cs.toronto.edu/~kriz/cifar.html) under {data_dir}, or use source "
                          f"hub:{CIFAR_HUB}")
    try:  # members read straight from the archive, nothing extracted to disk
        with tarfile.open(tarball, "r:gz") as tar:
            found = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in names if n not in found]
            if missing:
                raise DataMissing(f"{tarball} lacks {', '.join(missing)}; fetch {CIFAR_TARBALL} again")
            return {n: tar.extractfile(found[n]).read() for n in names}
    except (OSError, EOFError, tarfile.TarError, zlib.error) as err:
        raise DataMissing(f"{tarball} is unreadable ({one_line(err)}); fetch it again") from None


def _cifar_pickles(data_dir: Path) -> dict:
    raw = _read_batches(data_dir)
    train = [_cifar_batch(raw[n], n) for n in CIFAR_TRAIN]
    images, labels = np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])
    return split_lra(images, labels, _cifar_batch(raw["test_batch"], "test_batch"))


# ---- CIFAR-10 from the hub or a local copy of it -------------------------------------------------------------
def _decode_image(cell) -> np.ndarray:
    from PIL import Image

    image = Image.open(io.BytesIO(cell["bytes"])) if cell.get("bytes") else Image.open(cell["path"])
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _cifar_hub(ref: str, data_dir: Path) -> dict:
    hint = (f"set HF_HUB_OFFLINE=0 and HF_DATASETS_OFFLINE=0 to download it, or put {CIFAR_FOLDER} under "
            f"{data_dir} and use source cifar10")
    tables = hub_tables(ref, data_dir, ("train", "test"), hint)
    out = []
    for split, table in tables.items():
        column = next((c for c in ("img", "image") if c in table.column_names), None)
        if column is None or "label" not in table.column_names:
            raise DataMissing(f"{ref} {split} needs columns img (or image) and label, has {table.column_names}")
        try:
            images = np.stack([_decode_image(cell) for cell in table.column(column).to_pylist()])
        except Exception as err:  # undecodable bytes, missing files, images of another size
            raise DataMissing(f"{ref} {split}: images unreadable ({one_line(err)}); {hint}") from None
        if images.shape[1:] != (SIDE, SIDE, 3):
            raise DataMissing(f"{ref} {split}: images are {images.shape[1:]}, not 32 x 32 RGB")
        out.append((images, np.asarray(table.column("label").to_pylist(), dtype=np.int64)))
    return split_lra(*out[0], out[1])


def load_cifar10(source: str, data_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CIFAR-10 -> {"train", "val", "test"} -> (images (N, 32, 32, 3) uint8 HWC in R, G, B order, labels (N,) int64).

    source: ``cifar10`` (the pickle archive under data_dir) or ``hub:<id or local copy>`` (e.g. hub:uoft-cs/cifar10)."""
    data_dir = Path(data_dir)
    if source == "cifar10":
        return _cifar_pickles(data_dir)
    if source.startswith("hub:"):
        return _cifar_hub(source[len("hub:"):], data_dir)
    raise ValueError(f"CIFAR-10 source {source!r}: expected cifar10 or hub:<id>")


# ---- Fashion-MNIST: IDX files ---------------------------------------------------------------------------------
def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip or plain): big-endian magic 0x0000080<ndim>, ndim big-endian uint32 sizes,
    then the data, row-major."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataMissing(f"{path} is unreadable ({one_line(err)})") from None
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != IDX_MAGIC[ndim]:
        raise DataMissing(f"{path} is not an IDX file of {ndim}-dimensional bytes (magic {IDX_MAGIC[ndim]})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    if len(raw) != header + int(np.prod(shape)):
        raise DataMissing(f"{path} is truncated: {len(raw) - header} data bytes for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _idx_file(folder: Path, name: str) -> Path:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    raise DataMissing(f"Fashion-MNIST file {name}(.gz) not found: apt-get install dataset-fashion-mnist (or put the "
                      f"four IDX files in {folder})")


def load_fashion_mnist(folder=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST, the offline stand-in for CIFAR-10 -> {"train", "val", "test"} -> (images (N, 32, 32) uint8,
    labels (N,) int64): the 28 x 28 images with 2 zero pixels on every side. folder: None = Debian's
    /usr/share/datasets/fashion-mnist."""
    folder = Path(folder or FASHION_MNIST_DIR)
    parts = {}
    for split, (image_name, label_name) in IDX_FILES.items():
        image_file, label_file = _idx_file(folder, image_name), _idx_file(folder, label_name)
        images, labels = read_idx(image_file, 3), read_idx(label_file, 1)
        if len(images) != len(labels):
            raise DataMissing(f"{image_file} has {len(images)} images but {label_file} has {len(labels)} labels")
        h, w = images.shape[1:]
        if h > SIDE or w > SIDE:
            raise DataMissing(f"{image_file} holds {h} x {w} images, larger than {SIDE} x {SIDE}")
        top, left = (SIDE - h) // 2, (SIDE - w) // 2  # 28 x 28: 2 on each side
        padded = np.zeros((len(images), SIDE, SIDE), dtype=np.uint8)
        padded[:, top:top + h, left:left + w] = images
        parts[split] = (padded, labels.astype(np.int64))
    return split_lra(*parts["train"], parts["test"])


__all__ = ["CIFAR_HUB", "FASHION_MNIST_DIR", "grayscale", "hub_tables", "load_cifar10", "load_fashion_mnist",
           "read_idx", "split_lra"]
