"""Pathfinder-32: the generator is pure and balanced, its labels follow from the pixels alone (checked here by a
breadth-first search written independently of the module), and the released files load exactly."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from PIL import Image

from tasks.base import InfeasibleSetting
from tasks.lra import pathfinder
from tasks.lra.examples import DataMissing
from tasks.lra.pathfinder import (PathfinderSpec, find_markers, load_released, markers_connected, rendered_label,
                                  sample, sample_with_markers, split_released, split_samples, to_sequence)

SPEC = PathfinderSpec()


def groups(mask: np.ndarray, reach: int) -> list[set[tuple[int, int]]]:
    """Groups of True pixels, two pixels joined when within ``reach`` of each other (Chebyshev)."""
    left, out = {tuple(map(int, p)) for p in np.argwhere(mask)}, []
    while left:
        seed = left.pop()
        group, queue = {seed}, deque([seed])
        while queue:
            r, c = queue.popleft()
            for dr in range(-reach, reach + 1):
                for dc in range(-reach, reach + 1):
                    if (r + dr, c + dc) in left:
                        left.remove((r + dr, c + dc))
                        group.add((r + dr, c + dc))
                        queue.append((r + dr, c + dc))
        out.append(group)
    return out


def label_from_pixels(image: np.ndarray, spec: PathfinderSpec) -> int:
    """The two 255-valued dots are the markers; 1 iff one group of drawn pixels (gaps of up to reach - 1 pixels
    bridged) holds both."""
    dots = groups(image == 255, 1)
    assert len(dots) == 2
    a, b = (next(iter(d)) for d in dots)
    return int(any(a in g and b in g for g in groups(image > spec.threshold, spec.reach)))


def test_a_sample_is_a_pure_function_of_seed_split_and_index():
    image, label = sample(SPEC, 3, "train", 5)
    again, label_again = sample(SPEC, 3, "train", 5)
    assert image.shape == (32, 32) and image.dtype == np.uint8 and label in (0, 1)
    assert np.array_equal(image, again) and label == label_again
    assert image.max() == 255 and (image > 0).sum() > 50  # markers at 255, paths drawn
    for other in (sample(SPEC, 3, "val", 5)[0], sample(SPEC, 3, "test", 5)[0], sample(SPEC, 4, "train", 5)[0],
                  sample(SPEC, 3, "train", 6)[0]):
        assert not np.array_equal(image, other)
    images, labels = split_samples(SPEC, 3, "train", 3, start=4)
    assert images.shape == (3, 32, 32) and labels.dtype == np.int64
    assert np.array_equal(images[1], image) and labels[1] == label


def test_labels_are_balanced():
    _, labels = split_samples(SPEC, 0, "train", 400)
    assert abs(labels.mean() - 0.5) < 0.08


@pytest.mark.parametrize("contour_length", [14, 6])
def test_the_label_follows_from_the_pixels(contour_length):
    spec = PathfinderSpec(contour_length=contour_length)
    images, labels = split_samples(spec, 1, "test", 200)
    assert 0 < labels.sum() < 200
    for image, label in zip(images, labels):
        assert label_from_pixels(image, spec) == label
        assert rendered_label(image, spec) == label


def test_the_margins_do_the_work(monkeypatch):
    """The generator redraws an image whose pixels disagree with its label; the clearances make that rare."""
    checks = []
    real = pathfinder.markers_connected
    monkeypatch.setattr(pathfinder, "markers_connected", lambda *a: checks.append(1) or real(*a))
    split_samples(SPEC, 5, "train", 200)
    assert len(checks) < 1.1 * 200


def test_a_canvas_too_small_is_infeasible():
    with pytest.raises(InfeasibleSetting):
        sample(PathfinderSpec(resolution=16, max_retries=3), 0, "train", 0)


def test_both_markers_are_drawn_where_reported():
    for index in range(20):
        image, label, markers = sample_with_markers(SPEC, 2, "val", index)
        assert markers.shape == (2, 2) and not np.array_equal(markers[0], markers[1])
        assert (image[markers[:, 0], markers[:, 1]] == 255).all()
        found = find_markers(image)  # each dot's pixel nearest its centre: next to the reported one
        for m in markers:
            assert np.abs(found - m).max(1).min() <= 1
        assert markers_connected(image, markers, SPEC) == bool(label)


def test_the_pixel_check_bridges_short_gaps_only():
    image = np.zeros((8, 20), dtype=np.uint8)
    image[4, [0, 19]] = 255
    image[4, 1:19] = 150
    assert markers_connected(image, [(4, 0), (4, 19)], SPEC)
    image[4, 9] = 0  # a one-pixel gap: a dash
    assert markers_connected(image, [(4, 0), (4, 19)], SPEC)
    image[4, 10] = 20  # two pixels at most faint: another snake
    assert not markers_connected(image, [(4, 0), (4, 19)], SPEC)
    assert markers_connected(image, [(4, 0), (4, 19)], PathfinderSpec(gap=1.5))  # reach 3 jumps it


def test_to_sequence_is_row_major():
    images, _ = split_samples(SPEC, 0, "train", 2)
    sequences = to_sequence(images)
    assert sequences.shape == (2, 1024) and sequences[1, 3 * 32 + 7] == images[1, 3, 7]


def released(root, rows_per_file=((2, 3), (10, 3))):
    """Write the release layout: per (batch, n) n PNGs under imgs/<batch> and metadata/<batch>.npy (text rows)."""
    folder = root / "pathfinder32" / "curv_contour_length_14"
    (folder / "metadata").mkdir(parents=True)
    rng, expected = np.random.default_rng(0), []
    for batch, n in rows_per_file:
        (folder / "imgs" / str(batch)).mkdir(parents=True)
        lines = []
        for i in range(n):
            pixels, label = rng.integers(0, 256, (32, 32), dtype=np.uint8), int(rng.integers(2))
            Image.fromarray(pixels).save(folder / "imgs" / str(batch) / f"sample_{i}.png")
            lines.append(f"imgs/{batch} sample_{i}.png {i} {label} 1.0 14 4 2 0.5 1 1")
            expected.append((pixels, label))
        (folder / "metadata" / f"{batch}.npy").write_text("\n".join(lines) + "\n")
    return folder, expected


def test_the_released_files_load_in_metadata_order(tmp_path):
    folder, expected = released(tmp_path)
    (folder / "imgs" / "10" / "sample_1.png").write_bytes(b"")  # the release's empty file
    images, labels, skipped = load_released(tmp_path)
    kept = expected[:4] + expected[5:]  # batch 2 before batch 10 (numeric order), the empty file left out
    assert skipped == 1 and images.dtype == np.uint8 and images.shape == (5, 32, 32)
    assert np.array_equal(images, np.stack([p for p, _ in kept]))
    assert labels.tolist() == [label for _, label in kept]


def test_missing_or_corrupt_files_raise_one_line(tmp_path):
    with pytest.raises(DataMissing) as missing:
        load_released(tmp_path)
    assert "\n" not in str(missing.value) and "lra_release" in str(missing.value)
    assert "pathfinder32/curv_contour_length_14/metadata" in str(missing.value)
    folder, _ = released(tmp_path)
    (folder / "imgs" / "2" / "sample_2.png").write_bytes(b"not a png")
    with pytest.raises(DataMissing, match="sample_2.png") as corrupt:
        load_released(tmp_path)
    assert "\n" not in str(corrupt.value)


def test_released_splits_are_contiguous_80_10_10():
    images, labels = np.arange(20 * 4).reshape(20, 2, 2), np.arange(20)
    parts = {split: split_released(images, labels, split) for split in ("train", "val", "test")}
    assert [len(parts[s][1]) for s in ("train", "val", "test")] == [16, 2, 2]
    assert np.array_equal(np.concatenate([parts[s][1] for s in ("train", "val", "test")]), labels)
    assert all(np.array_equal(parts[s][0], images[parts[s][1]]) for s in parts)
