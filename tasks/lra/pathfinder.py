"""Pathfinder (Kim, Linsley et al. 2020) as Long Range Arena uses it: Pathfinder-32, a 32 x 32 grayscale image with
two marker dots and dashed curves ("snakes" of short segments, "paddles"); label 1 iff the markers are the two ends of
one snake. Models read it as a 1024-pixel sequence (vocabulary 256).

Generation follows the original generator (github.com/drewlinsley/pathfinder) with LRA's Pathfinder-32 settings:
two target snakes of ``contour_length`` paddles start ``seed_distance`` apart near the centre; one marker sits on the
origin of snake o (o drawn 50/50), the other on the far end of snake o (label 1) or of the other snake (label 0), so
both classes show two full-length snakes and lengths do not give the label away; distractor snakes follow. Each
paddle turns from the last by an angle with density ~ cos^2(continuity * turn), among the turns that stay free.

Unlike the original, whose gaps inside a snake (2 px) are as wide as the space between snakes, different snakes keep
``clearance`` px apart, and each image is checked from its pixels alone (``markers_connected``: threshold, jump
gaps of up to ``reach`` px, flood fill); one whose pixels disagree with its label is drawn again (2 % of draws at
length 14, 0.5 % at 6). So the label is a function of the image (``rendered_label``), as the tests check.

Sample ``index`` of a split is a pure function of (data seed, split, index). Measured on one CPU core over 2000
samples: 3.2 ms per image at contour length 14, 1.7 ms at 9, 1.2 ms at 6; label mean 0.49.

``load_released`` reads the LRA release (``pathfinder32/<difficulty>/imgs/<k>/sample_<i>.png`` and text metadata
``metadata/<k>.npy``, one row per image: ``imgs/<k> sample_<i>.png <i> <label> ...``, as LRA and S4 read it).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base import SPLITS, InfeasibleSetting
from .examples import DataMissing

CELLS = 2  # occupancy grid cells per pixel
TARGET_TRIES = 2  # starts tried per target snake before the whole image is drawn again
DISTRACTOR_TRIES = 4  # attempts per distractor before it is left out (the original's max contour retrial)
FAN = 17  # turn angles evaluated per paddle, spread evenly over (-pi / 2, pi / 2) / continuity
DIRS, SUBS = 64, 4  # stamp templates: paddle directions, and positions of a point per cell side
_ALONG = np.linspace(0.0, 1.0, 5)  # where a candidate paddle is tested against the occupancy grid
_RING = np.concatenate([[0], np.exp(1j * np.pi / 4 * np.arange(8))])  # a marker's centre and rim directions


@dataclass
class PathfinderSpec:
    """One Pathfinder variant. Lengths in pixels of the final image; defaults are LRA's Pathfinder-32 "hard"."""

    resolution: int = 32  # image side R
    contour_length: int = 14  # paddles per target snake (LRA: 6 "easy", 9 "intermediate", 14 "hard")
    paddle_length: float = 2.0  # drawn length of one paddle
    gap: float = 1.0  # the original's paddle margin: consecutive paddles are 2 * gap apart (pivot in the middle)
    paddle_thickness: float = 0.5  # line width
    marker_radius: float = 1.5
    # the original's unit: the turn d between consecutive paddles has density ~ cos^2(continuity * d) on
    # |d| < pi / (2 continuity); 1.0 allows up to 90 degrees per paddle, larger values give straighter snakes
    continuity: float = 1.0
    seed_distance: float = 7.0  # distance between the origins of the two target snakes
    num_distractors: int = 5  # distractor snakes tried (the original: 20 // distractor_length); crowded ones drop
    distractor_length: int | None = None  # paddles per distractor; 0 / None = contour_length // 3
    snake_contrast: float = 2.0  # path brightness = min(snake * paddle contrast * pixel coverage, paddle contrast)
    paddle_contrast: float = 0.75  # peak path brightness relative to the markers (255), so markers stay distinct
    padding: int = 1  # paddles keep this far from the border
    clearance: float = 3.5  # centre lines of different snakes (and target ends' markers) stay this far apart
    threshold: int = 32  # the pixel check counts pixels above this value as drawn
    antialias: int = 2  # render at this many subsamples per pixel side, then average
    candidates: int = 8  # start points (and first headings) tried per snake
    max_retries: int = 100  # whole-image attempts before the setting is declared infeasible

    @property
    def distractor_paddles(self) -> int:
        return self.distractor_length or self.contour_length // 3

    @property
    def reach(self) -> int:
        """Pixels (Chebyshev) the pixel check may jump: dashes 2 * gap apart stay connected."""
        return int(math.ceil(2 * self.gap))


# Geometry is complex: a point is x + i y in pixels (row y, column x), a heading is a unit complex number.
def _segment_distance(p, a, b):
    """|p - nearest point of segment a-b|, broadcast over complex arrays."""
    ab = b - a
    t = np.minimum(np.maximum(((p - a) * np.conj(ab)).real / np.maximum(np.abs(ab) ** 2, 1e-12), 0.0), 1.0)
    return np.abs(p - a - t * ab)


@functools.lru_cache(maxsize=16)
def _templates(length: float, radius: float) -> np.ndarray:
    """The cells within ``radius`` of a segment of ``length`` from a point, for DIRS directions (1 if length is 0)
    and SUBS x SUBS positions of the point in its cell -> (DIRS, SUBS, SUBS, T, T) bool centred on that cell."""
    h = int(math.ceil((length + radius) * CELLS)) + 1
    rel = (np.arange(-h, h + 1)[None, :] + 0.5 - (np.arange(SUBS)[:, None] + 0.5) / SUBS) / CELLS  # (SUBS, T) px
    cells = rel[None, None, :, None, :] + 1j * rel[None, :, None, :, None]  # (1, SUBS y, SUBS x, T y, T x)
    ends = length * np.exp(2j * np.pi * np.arange(DIRS if length else 1) / DIRS)
    return _segment_distance(cells, 0, ends[:, None, None, None, None]) <= radius


class _Scene:
    """The snakes of one image, grown a paddle at a time on an occupancy grid (CELLS x CELLS cells per pixel): a cell
    is taken when its centre lies within ``clearance`` of a committed paddle (or marker_radius + clearance of a
    target's end), or within ``padding`` of the border."""

    def __init__(self, spec: PathfinderSpec, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        self.paddle_tiles = _templates(float(spec.paddle_length), float(spec.clearance))
        self.tip_tiles = _templates(0.0, float(spec.marker_radius + spec.clearance))
        # a blocked margin: stamps need no clipping, and tested points (at most a paddle step or the second origin's
        # offset, plus a marker's rim, outside the canvas) stay on the grid
        reach = max(2 * spec.gap + spec.paddle_length, spec.seed_distance) + spec.marker_radius + 1
        self.margin = max(self.paddle_tiles.shape[-1] // 2, self.tip_tiles.shape[-1] // 2, math.ceil(reach * CELLS)) + 1
        centre = (np.arange(spec.resolution * CELLS + 2 * self.margin) - self.margin + 0.5) / CELLS  # in pixels
        edge = (centre < spec.padding) | (centre > spec.resolution - spec.padding)
        self.taken = edge[:, None] | edge[None, :]
        self.paddles: list[tuple[complex, complex]] = []
        t = (np.arange(FAN) + 0.5) / FAN * np.pi - np.pi / 2
        self.fan, self.weights = np.exp(1j * t / spec.continuity), np.cos(t) ** 2  # the original's turn weights

    def blocked(self, taken: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Whether the cells holding ``points`` (complex, within the margin of the canvas) are taken."""
        return taken[(points.imag * CELLS + self.margin).astype(np.intp), (points.real * CELLS + self.margin)
                     .astype(np.intp)]

    def stamp(self, taken: np.ndarray, a: complex, b: complex | None = None) -> None:
        """Take the cells within ``clearance`` of paddle a-b, or within marker_radius + clearance of point a."""
        if b is None:
            tiles, k = self.tip_tiles, 0
        else:
            tiles = self.paddle_tiles
            k = round(math.atan2(b.imag - a.imag, b.real - a.real) * DIRS / (2 * math.pi)) % DIRS
        y, x = a.imag * CELLS, a.real * CELLS
        iy, ix = math.floor(y), math.floor(x)
        tile = tiles[k, int((y - iy) * SUBS), int((x - ix) * SUBS)]
        y0, x0 = iy + self.margin - tile.shape[0] // 2, ix + self.margin - tile.shape[1] // 2
        taken[y0:y0 + tile.shape[0], x0:x0 + tile.shape[1]] |= tile

    def free_disc(self, centres: np.ndarray) -> np.ndarray:
        """centres (...) -> (...) True where a marker there would touch no taken cell (centre and rim tested)."""
        return ~self.blocked(self.taken, centres[..., None] + self.spec.marker_radius * _RING).any(-1)

    def grow(self, n: int, starts: np.ndarray, marked: bool = False) -> tuple[list, np.ndarray] | None:
        """A snake of n paddles [(a, b), ...] from the first free one of ``starts`` (K,) and the grid with it
        stamped, or None if it gets stuck. Its own paddles enter the grid one step late, so a paddle may come near
        its predecessor only. A stuck target (``marked``) backs up two paddles and redraws, n // 2 times at most; its
        end must take a marker clear of the other snakes and away from the origin's marker."""
        s = self.spec
        snake: list[tuple[complex, complex]] = []
        grids, headings = [self.taken], []  # grids[i]: what paddle i avoids (others, own paddles 0 .. i - 2)
        backups = n // 2 if marked else 0
        while len(snake) < n:
            if not snake:  # K starts with random headings: the first free one
                u = np.exp(1j * self.rng.uniform(-np.pi, np.pi, len(starts)))
                a = starts
            else:  # the fan of turns; consecutive paddles 2 gap apart about a pivot
                u = headings[-1] * self.fan
                a = snake[-1][1] + s.gap * headings[-1] + s.gap * u
            b = a + s.paddle_length * u
            free = ~self.blocked(grids[-1], a[:, None] + _ALONG * (b - a)[:, None]).any(1)  # (K,)
            if marked and len(snake) == n - 1:
                origin = snake[0][0] if snake else a
                free &= self.free_disc(b) & (np.abs(b - origin) >= 2 * s.marker_radius + s.clearance)
            if not free.any():
                if backups == 0 or not snake:
                    return None
                backups -= 1
                drop = min(2, len(snake))
                del snake[-drop:], grids[-drop:], headings[-drop:]
                continue
            if not snake:
                j = int(np.argmax(free))
            else:  # a free turn drawn with the original's weights cos^2(continuity * turn)
                cdf = np.cumsum(self.weights * free)
                j = min(int(np.searchsorted(cdf, self.rng.random() * cdf[-1], side="right")), FAN - 1)
            snake.append((complex(a[j]), complex(b[j])))
            headings.append(complex(u[j]))
            grid = grids[-1]
            if len(snake) >= 2:
                grid = grid.copy()
                self.stamp(grid, *snake[-2])
            grids.append(grid)
        own = grids[-1].copy()
        self.stamp(own, *snake[-1])
        return snake, own

    def commit(self, snake: list, own: np.ndarray) -> None:
        self.taken = own
        self.paddles += snake

    def targets(self) -> np.ndarray | None:
        """Two target snakes -> their (origin, end) points (2, 2) complex, or None if they do not fit."""
        s, k, r = self.spec, self.spec.candidates, self.spec.resolution
        edge = min(2 * s.seed_distance, r / 2 - 1)  # the first origin lies in the central square, as in the original
        origin = complex(*self.rng.uniform(edge, r - edge, 2))
        tips: list[tuple[complex, complex]] = []
        for t in range(2):
            for _ in range(TARGET_TRIES):
                starts = np.full(k, origin)
                if t == 1:  # the second origin: seed_distance away at a random angle
                    starts = tips[0][0] + s.seed_distance * np.exp(1j * self.rng.uniform(-np.pi, np.pi, k))
                    free = np.flatnonzero(self.free_disc(starts))
                    if len(free) == 0:
                        return None
                    starts = np.full(k, starts[free[0]])
                grown = self.grow(s.contour_length, starts, marked=True)
                if grown is not None:
                    self.commit(*grown)
                    tips.append((grown[0][0][0], grown[0][-1][1]))
                    for tip in tips[-1]:  # every target end may carry a marker: all four keep the others away
                        self.stamp(self.taken, tip)
                    break
            else:
                return None
        return np.array(tips)

    def distractors(self) -> None:
        s, k, side = self.spec, self.spec.candidates, self.taken.shape[0]
        for _ in range(s.num_distractors):
            for _ in range(DISTRACTOR_TRIES):  # a distractor that does not fit is left out, as in the original
                free = np.flatnonzero(~self.taken)
                if len(free) == 0:
                    return
                y, x = np.array(np.divmod(free[self.rng.integers(len(free), size=k)], side)) - self.margin
                jitter = self.rng.random((2, k))  # starts anywhere in free cells
                grown = self.grow(s.distractor_paddles, (x + jitter[0] + 1j * (y + jitter[1])) / CELLS)
                if grown is not None:
                    self.commit(*grown)
                    break

    def render(self, markers: np.ndarray) -> np.ndarray:
        """Paddles and marker discs (markers (2,) complex), antialiased: subsample coverage with a one-subsample
        ramp, averaged per pixel -> (R, R) uint8; paths peak at 255 * paddle_contrast, marker centres at 255."""
        s, aa, r = self.spec, self.spec.antialias, self.spec.resolution
        half = s.paddle_thickness / 2
        a, b = (np.array(e)[:, None, None] for e in zip(*self.paddles))  # (P, 1, 1) each
        # every paddle's coverage on a W x W window of subsamples from its corner: vectorised over paddles
        w = int(math.ceil((s.paddle_length + 2 * half + 2) * aa)) + 1
        y0 = np.floor((np.minimum(a.imag, b.imag) - half - 1) * aa).astype(np.int64)
        x0 = np.floor((np.minimum(a.real, b.real) - half - 1) * aa).astype(np.int64)
        iy = np.minimum(np.maximum(y0 + np.arange(w)[:, None], 0), r * aa - 1)  # (P, W, 1)
        ix = np.minimum(np.maximum(x0 + np.arange(w)[None, :], 0), r * aa - 1)  # (P, 1, W)
        d = _segment_distance((ix + 0.5 + 1j * (iy + 0.5)) / aa, a, b)  # (P, W, W)
        fine = np.zeros((r * aa, r * aa))
        np.maximum.at(fine, (np.broadcast_to(iy, d.shape), np.broadcast_to(ix, d.shape)),
                      np.minimum(np.maximum((half - d) * aa + 0.5, 0.0), 1.0))
        paths = fine.reshape(r, aa, r, aa).mean((1, 3))
        paths = np.minimum(s.snake_contrast * s.paddle_contrast * paths, s.paddle_contrast)
        grid = (np.arange(r * aa) + 0.5) / aa
        d = np.abs(grid[None, :, None] + 1j * grid[:, None, None] - markers).min(-1)  # (R aa, R aa)
        dots = np.minimum(np.maximum((s.marker_radius - d) * aa + 0.5, 0.0), 1.0)
        image = np.maximum(paths, dots.reshape(r, aa, r, aa).mean((1, 3)))
        return np.round(255 * image).astype(np.uint8)


def sample_with_markers(spec: PathfinderSpec, data_seed: int, split: str,
                        index: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Sample ``index`` of ``split`` -> (image (R, R) uint8, label, marker pixels (2, 2) int64 as (row, col))."""
    rng = np.random.default_rng([data_seed, SPLITS[split], index])
    label = int(rng.integers(2))
    for _ in range(spec.max_retries):
        scene = _Scene(spec, rng)
        tips = scene.targets()  # (snake, origin / end)
        if tips is None:
            continue
        scene.distractors()
        o = int(rng.integers(2))  # the snake whose origin carries a marker
        markers = np.array([tips[o, 0], tips[o if label else 1 - o, 1]])
        image = scene.render(markers)
        pixels = np.floor(np.stack([markers.imag, markers.real], 1)).astype(np.int64)
        if markers_connected(image, pixels, spec) == bool(label):  # else redraw: ~2 % at the defaults
            return image, label, pixels
    raise InfeasibleSetting(f"no Pathfinder image with {spec} after {spec.max_retries} attempts")


def sample(spec: PathfinderSpec, data_seed: int, split: str, index: int) -> tuple[np.ndarray, int]:
    image, label, _ = sample_with_markers(spec, data_seed, split, index)
    return image, label


def split_samples(spec: PathfinderSpec, data_seed: int, split: str, n: int,
                  start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Samples start .. start + n - 1 -> (images (n, R, R) uint8, labels (n,) int64)."""
    images = np.zeros((n, spec.resolution, spec.resolution), dtype=np.uint8)
    labels = np.zeros(n, dtype=np.int64)
    for i in range(n):
        images[i], labels[i] = sample(spec, data_seed, split, start + i)
    return images, labels


def to_sequence(images: np.ndarray) -> np.ndarray:
    """(N, R, R) -> (N, R R) row-major pixel sequences, as LRA feeds them."""
    return images.reshape(len(images), -1)


# ---- the label from pixels alone -----------------------------------------------------------------------------
def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r + 1) x (2r + 1) square."""
    rows = mask.copy()
    for k in range(1, r + 1):
        rows[k:] |= mask[:-k]
        rows[:-k] |= mask[k:]
    out = rows.copy()
    for k in range(1, r + 1):
        out[:, k:] |= rows[:, :-k]
        out[:, :-k] |= rows[:, k:]
    return out


def markers_connected(image: np.ndarray, markers, spec: PathfinderSpec | None = None) -> bool:
    """Whether the drawn pixels (above ``spec.threshold``) join the two marker pixels (row, col) when a step may
    jump up to ``spec.reach`` pixels (Chebyshev): a flood fill from the first marker, each round the reached set
    dilated by a (2 reach + 1)-square and cut back to the drawn pixels."""
    spec = spec or PathfinderSpec()
    foreground, reach = image > spec.threshold, spec.reach
    (r0, c0), (r1, c1) = markers
    reached = np.zeros_like(foreground)
    reached[r0, c0] = foreground[r0, c0]
    while True:
        grown = _dilate(reached, reach) & foreground
        if grown[r1, c1]:
            return True
        if (grown == reached).all():
            return False
        reached = grown


def find_markers(image: np.ndarray) -> np.ndarray:
    """The two marker dots, 8-connected groups of pixels at 255 (paths stay below) -> (2, 2) (row, col): per group
    its pixel nearest the group's mean. ValueError unless there are exactly two groups."""
    left, found = image == 255, []
    while left.any():
        group = np.zeros_like(left)
        group.flat[np.argmax(left)] = True
        while not ((grown := _dilate(group, 1) & left) == group).all():
            group = grown
        left &= ~group
        cells = np.argwhere(group)
        found.append(cells[np.argmin(((cells - cells.mean(0)) ** 2).sum(1))])
    if len(found) != 2:
        raise ValueError(f"expected two marker dots (groups of pixels at 255), found {len(found)}")
    return np.stack(found)


def rendered_label(image: np.ndarray, spec: PathfinderSpec | None = None) -> int:
    """The label decided from the image alone: 1 iff the two marker dots are joined by a path."""
    return int(markers_connected(image, find_markers(image), spec))


# ---- the released files --------------------------------------------------------------------------------------
def load_released(root: str | Path, difficulty: str = "curv_contour_length_14",
                  resolution: int = 32) -> tuple[np.ndarray, np.ndarray, int]:
    """The released images of one difficulty in metadata order (files ``metadata/<k>.npy`` by k, rows in file order)
    -> (images (N, R, R) uint8, labels (N,) int64, skipped): images whose file is missing or empty are skipped and
    counted (the release holds one empty file, which S4 blacklists and LRA filters out)."""
    from PIL import Image

    folder = Path(root) / f"pathfinder{resolution}" / difficulty
    files = sorted((folder / "metadata").glob("*.npy"),  # by batch number, as S4 reads them
                   key=lambda p: (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.name))
    if not files:
        raise DataMissing(f"Pathfinder files missing: extract lra_release.gz so that {folder / 'metadata'} exists "
                          f"(<root>/pathfinder{resolution}/{difficulty}/metadata/*.npy)")
    images, labels, skipped = [], [], 0
    for meta in files:
        rows = [line.split() for line in meta.read_text(errors="replace").splitlines() if line.strip()]
        for line_no, row in enumerate(rows, 1):  # imgs/<k> sample_<i>.png <i> <label> ...: LRA and S4 read 0, 1, 3
            try:
                label = int(float(row[3]))
            except (IndexError, ValueError):
                raise DataMissing(f"{meta} row {line_no} is not a Pathfinder metadata row (subpath file index label "
                                  f"...); extract lra_release.gz again") from None
            png = folder / row[0] / row[1]
            if not png.is_file() or png.stat().st_size == 0:
                skipped += 1
                continue
            try:
                with Image.open(png) as im:
                    pixels = np.asarray(im.convert("L"), dtype=np.uint8)
            except (OSError, ValueError, SyntaxError):
                raise DataMissing(f"{png} is not a readable PNG; extract lra_release.gz again") from None
            if pixels.shape != (resolution, resolution):
                raise DataMissing(f"{png} is {pixels.shape[1]}x{pixels.shape[0]}, not {resolution}x{resolution}")
            images.append(pixels)
            labels.append(label)
    stacked = np.stack(images) if images else np.zeros((0, resolution, resolution), dtype=np.uint8)
    return stacked, np.asarray(labels, dtype=np.int64), skipped


def split_released(images: np.ndarray, labels: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous 80 / 10 / 10 slices of the metadata order: train [0, 0.8 N), val [0.8 N, 0.9 N), test the rest.
    LRA slices its TFDS order the same way ("hard[:80%]" ...; it drops empty files after slicing, we before); S4
    instead splits at random with seed 42 (random_split)."""
    n = len(labels)
    bounds = {"train": (0, n * 8 // 10), "val": (n * 8 // 10, n * 9 // 10), "test": (n * 9 // 10, n)}
    lo, hi = bounds[split]
    return images[lo:hi], labels[lo:hi]


__all__ = ["PathfinderSpec", "find_markers", "load_released", "markers_connected", "rendered_label", "sample",
           "sample_with_markers", "split_released", "split_samples", "to_sequence"]
