"""The six LRA tasks (``TASKS`` keys ``lra_listops``, ``lra_pathfinder``, ``lra_image``, ``lra_image_rgb``,
``lra_retrieval``, ``lra_text``): where each one's data come from, its encoder and its preview symbols."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from xlstm.config import require

from ..heads import token_encoder
from . import listops
from .examples import DataMissing, Examples
from .task import LRAConfig, LRATask

ENCODINGS = ("embedding", "linear")


# ---- ListOps --------------------------------------------------------------------------------------------------
@dataclass
class ListOpsConfig(LRAConfig):
    name: str = "lra_listops"
    source: str = "generate"  # generate | tsv (the LRA release's basic_{train,val,test}.tsv in `path`)
    min_length: int = 500  # generated trees have min_length < tokens < max_length (LRA: 500, 2000)
    max_length: int = 2000  # also where released rows are truncated
    max_depth: int = 10
    max_args: int = 10

    def check(self) -> None:
        super().check()
        require(self.source in ("generate", "tsv"), "source", "generate | tsv", self.source)
        require(0 <= self.min_length < self.max_length - 1, "min_length", "in [0, max_length - 1)", self.min_length)
        require(self.max_depth >= 1, "max_depth", ">= 1", self.max_depth)
        require(self.max_args >= 2, "max_args", ">= 2", self.max_args)


class ListOpsTask(LRATask):
    config_class = ListOpsConfig
    paper_name = "ListOps"
    folder = "listops"
    num_classes = 10
    generated_defaults = {"train": 96_000, "val": 2_000, "test": 2_000}  # the LRA release's sizes

    def _grammar(self) -> dict:
        c = self.config
        return {"min_length": c.min_length, "max_length": c.max_length, "max_depth": c.max_depth,
                "max_args": c.max_args}

    def load(self, split: str) -> Examples:
        c = self.config
        if c.source == "tsv":
            return listops.load_tsv(self.root, split, c.max_length)
        n = self.generated_size(split)
        return self.cached(split, {"n": n, "seed": c.data_seed, **self._grammar()},
                           lambda: listops.generate(c.data_seed, split, n, **self._grammar()))

    def encoder(self, dim: int) -> nn.Module:
        return token_encoder(len(listops.VOCAB), dim)

    def describe(self, inputs: np.ndarray, length) -> str:
        return " ".join(listops.VOCAB[int(t)] for t in inputs[:int(length)])

    def preview_examples(self, n: int, length: int | None, seed: int) -> Examples:
        grammar = self._grammar()
        if length is not None:  # at most `length` tokens; the lower bound follows when it would not fit
            grammar.update(max_length=length + 1, min_length=min(grammar["min_length"], length // 2))
        return listops.generate(seed, "train", n, **grammar)


# ---- pixel tasks: Pathfinder, G-Image, RGB-Image --------------------------------------------------------------
@dataclass
class PixelConfig(LRAConfig):
    # embedding: pixel values 0-255 as tokens (LRA's input); linear: intensities scaled by the training split's
    # per-channel mean and std through a linear layer (the S4 / S5 / LRU input)
    encoding: str = "embedding"

    def check(self) -> None:
        super().check()
        require(self.encoding in ENCODINGS, "encoding", " | ".join(ENCODINGS), self.encoding)


class PixelTask(LRATask):
    """Images as row-major pixel sequences: inputs (N, H W) uint8, or (N, H W, 3) for colour."""

    channels: ClassVar[int] = 1

    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std of the training split's intensities in [0, 1], from each channel's histogram of
        the 256 pixel values (exact, and no float copy of the split)."""
        if not hasattr(self, "_moments"):
            train = self.examples("train").inputs.reshape(len(self.examples("train")), -1, self.channels)
            levels = np.arange(256) / 255.0
            mean, std = [], []
            for c in range(self.channels):
                counts = np.bincount(train[..., c].ravel(), minlength=256)
                m = counts @ levels / counts.sum()
                mean.append(m)
                std.append(np.sqrt(counts @ (levels - m) ** 2 / counts.sum()))
            self._moments = (np.float32(mean), np.float32(std) + np.float32(1e-6))
        return self._moments

    def features(self, inputs: np.ndarray) -> torch.Tensor:
        if self.config.encoding == "embedding":
            return torch.from_numpy(inputs.astype(np.int64))
        mean, std = self._scale()
        values = inputs.reshape(*inputs.shape[:2], self.channels).astype(np.float32) / 255.0  # (B, S, C)
        return torch.from_numpy((values - mean) / std)

    def encoder(self, dim: int) -> nn.Module:
        if self.config.encoding == "embedding":
            return token_encoder(256, dim)
        return nn.Linear(self.channels, dim)


@dataclass
class PathfinderConfig(PixelConfig):
    name: str = "lra_pathfinder"
    source: str = "generate"  # generate | released (pathfinder32/<difficulty> of the LRA release in `path`)
    difficulty: str = "curv_contour_length_14"  # released folder; LRA uses the hard one
    resolution: int = 32
    contour_length: int = 14  # paddles on the path that may join the markers (Pathfinder-32 "hard": 14)
    num_distractors: int = 5
    batch_size: int = 64

    def check(self) -> None:
        super().check()
        require(self.source in ("generate", "released"), "source", "generate | released", self.source)
        require(self.resolution >= 8, "resolution", ">= 8", self.resolution)
        require(self.contour_length >= 2, "contour_length", ">= 2", self.contour_length)
        require(self.num_distractors >= 0, "num_distractors", ">= 0", self.num_distractors)


class PathfinderTask(PixelTask):
    config_class = PathfinderConfig
    paper_name = "Pathfinder"
    folder = "pathfinder"
    generated_defaults = {"train": 160_000, "val": 20_000, "test": 20_000}  # 80/10/10 of LRA's 200k per difficulty

    def spec(self):
        from .pathfinder import PathfinderSpec

        c = self.config
        return PathfinderSpec(resolution=c.resolution, contour_length=c.contour_length,
                              num_distractors=c.num_distractors)

    def load(self, split: str) -> Examples:
        from . import pathfinder

        c = self.config
        if c.source == "released":
            if not hasattr(self, "_released"):
                self._released = pathfinder.load_released(self.root, c.difficulty)
            images, labels = pathfinder.split_released(*self._released[:2], split)
        else:
            n, spec = self.generated_size(split), self.spec()

            def make() -> Examples:
                images, labels = pathfinder.split_samples(spec, c.data_seed, split, n)
                return _image_examples(images, labels)

            return self.cached(split, {"n": n, "seed": c.data_seed, "spec": vars(spec)}, make)
        return _image_examples(images, labels)

    def preview_examples(self, n: int, length: int | None, seed: int) -> Examples:
        from . import pathfinder

        return _image_examples(*pathfinder.split_samples(self.spec(), seed, "train", n))


def average_pool(images: np.ndarray, factor: int) -> np.ndarray:
    """(N, H, W[, C]) uint8 -> (N, H / f, W / f[, C]): the mean of each f x f patch, rounded."""
    if factor == 1:
        return images
    n, h, w = images.shape[:3]
    patches = images.reshape(n, h // factor, factor, w // factor, factor, *images.shape[3:])
    return np.rint(patches.mean(axis=(2, 4))).astype(np.uint8)


def _image_examples(images: np.ndarray, labels: np.ndarray) -> Examples:
    """(N, H, W[, 3]) uint8 -> row-major sequences (N, H W[, 3])."""
    n, h, w = images.shape[:3]
    inputs = images.reshape(n, h * w, *images.shape[3:])
    return Examples(inputs, np.full(n, h * w, dtype=np.int64), np.asarray(labels, dtype=np.int64))


@dataclass
class ImageConfig(PixelConfig):
    name: str = "lra_image"
    # cifar10: the python-pickle archive (cifar-10-batches-py or cifar-10-python.tar.gz) in `path`;
    # hub:<id>: a hub dataset (uoft-cs/cifar10) or a local copy of it; fashion_mnist: the offline stand-in
    # (Fashion-MNIST padded to 32 x 32; never CIFAR-10 numbers)
    source: str = "cifar10"
    pool: int = 1  # average-pool each side by this factor before flattening (2: 16 x 16 = 256 positions)
    batch_size: int = 64

    def check(self) -> None:
        super().check()
        require(self.source in ("cifar10", "fashion_mnist") or self.source.startswith("hub:"), "source",
                "cifar10 | hub:<dataset id or local copy> | fashion_mnist", self.source)
        require(self.pool >= 1 and 32 % self.pool == 0, "pool", "a divisor of 32", self.pool)


class ImageTask(PixelTask):
    """G-Image: CIFAR-10 in grayscale (PIL's luma), 1024 pixels, 10 classes."""

    config_class = ImageConfig
    paper_name = "G-Image"
    folder = "cifar10"
    num_classes = 10

    def _splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        from . import images

        if not hasattr(self, "_all"):
            c = self.config
            if c.source == "fashion_mnist":
                self._all = images.load_fashion_mnist(c.path)
            else:
                self._all = images.load_cifar10(c.source, self.root)
        return self._all

    def colour(self, pixels: np.ndarray) -> np.ndarray:
        from .images import grayscale

        return pixels if pixels.ndim == 3 else grayscale(pixels)

    def load(self, split: str) -> Examples:
        pixels, labels = self._splits()[split]
        return _image_examples(self.colour(average_pool(pixels, self.config.pool)), labels)


@dataclass
class RGBImageConfig(ImageConfig):
    name: str = "lra_image_rgb"
    encoding: str = "linear"  # three channels per position through a linear layer (as LRU); no embedding

    def check(self) -> None:
        super().check()
        require(self.encoding == "linear", "encoding", "linear (three channels per position)", self.encoding)


class RGBImageTask(ImageTask):
    """RGB-Image: CIFAR-10 in colour, 1024 positions of 3 channels (as the LRU paper)."""

    config_class = RGBImageConfig
    paper_name = "RGB-Image"
    channels = 3

    def colour(self, pixels: np.ndarray) -> np.ndarray:
        if pixels.ndim == 3:  # a grayscale source (the Fashion-MNIST stand-in): the gray value in every channel
            return np.repeat(pixels[..., None], 3, axis=-1)
        return pixels


# ---- byte-level text: Retrieval (AAN) and Text (IMDB) --------------------------------------------------------
@dataclass
class TextConfig(LRAConfig):
    name: str = "lra_text"
    source: str = "aclImdb"  # aclImdb (the folders in `path`) | hub:<id> (imdb, or a local copy of it)
    max_length: int = 4096  # bytes per review
    batch_size: int = 32

    def check(self) -> None:
        super().check()
        require(self.source == "aclImdb" or self.source.startswith("hub:"), "source", "aclImdb | hub:<id>",
                self.source)
        require(self.max_length >= 1, "max_length", ">= 1", self.max_length)


class ByteTask(LRATask):
    """UTF-8 bytes as tokens: byte + 1, 0 for padding (vocabulary 257)."""

    def encoder(self, dim: int) -> nn.Module:
        return token_encoder(257, dim)

    def describe(self, inputs: np.ndarray, length) -> str:
        rows = inputs if self.paired else inputs[None]
        lengths = np.atleast_1d(length)
        texts = [bytes(int(t) - 1 for t in row[:int(n)]).decode("utf-8", "replace") for row, n in zip(rows, lengths)]
        return " ||| ".join(texts)


class TextTask(ByteTask):
    config_class = TextConfig
    paper_name = "Text"
    folder = "imdb"

    def load(self, split: str) -> Examples:
        from .text import load_imdb

        if not hasattr(self, "_all"):
            c = self.config
            self._all = load_imdb(c.source, self.root, c.max_length)
        return self._all[split]


@dataclass
class RetrievalConfig(LRAConfig):
    name: str = "lra_retrieval"
    max_length: int = 4000  # bytes per document (LRA)
    batch_size: int = 64

    def check(self) -> None:
        super().check()
        require(self.max_length >= 1, "max_length", ">= 1", self.max_length)


class RetrievalTask(ByteTask):
    """AAN: does paper 1 cite paper 2? Two documents through one encoder and backbone (``PairClassifier``)."""

    config_class = RetrievalConfig
    paper_name = "Retrieval"
    folder = "aan"
    paired = True

    def load(self, split: str) -> Examples:
        from .text import load_aan

        if not hasattr(self, "_all"):
            self._all = load_aan(self.root, self.config.max_length)
        return self._all[split]


LRA_TASKS = {"lra_listops": ListOpsTask, "lra_pathfinder": PathfinderTask, "lra_image": ImageTask,
             "lra_image_rgb": RGBImageTask, "lra_retrieval": RetrievalTask, "lra_text": TextTask}

__all__ = ["DataMissing", "LRA_TASKS", *[cls.__name__ for cls in LRA_TASKS.values()]]
