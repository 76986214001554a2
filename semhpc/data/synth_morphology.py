"""The ten category morphologies of the synthetic SEM data: each draws a surface to be imaged.

A morphology is a function `draw(rng, canvas) -> Surface`: a height map in pixels (so slopes are
geometric and the SEM shading in `synth` can turn them into edge brightness) and an albedo
(material brightness: metal bright, deep pores dark). Sizes are written in *units*; `canvas.unit`
says how many pixels a unit spans in this image (image width / 256 x the image's zoom), so a
morphology looks the same at any image size and zooms with the magnification. `unit_m` in
MORPHOLOGIES is the physical length of one unit, which sets the pixel size in the metadata.

Every category gets its own look (docs/background.md: Data), with sub-styles where the archive class merges
several kinds of image, and random sizes, counts and positions within each. What tells classes
apart must survive the demo's 4x downscaling (256 -> 64 pixels wide): mainly shape and layout at
the scale of several units, not fine texture.

To change a category, edit its `_draw_*` function; to add one, add a function and an entry in
MORPHOLOGIES (and the name in categories.CATEGORIES).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

# ---------------------------------------------------------------------------------------------
# Drawing helpers shared by the morphologies


@dataclass(frozen=True)
class Canvas:
    """Where a morphology draws: the image size and the zoom, as pixels per unit."""

    height: int
    width: int
    unit: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def area_units(self) -> float:
        """Image area in square units: object counts scale with it, so density is zoom-independent."""
        return self.height * self.width / self.unit**2

    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (y, x) as broadcastable float32 column and row."""
        return (np.arange(self.height, dtype=np.float32)[:, None],
                np.arange(self.width, dtype=np.float32)[None, :])


@dataclass
class Surface:
    height: np.ndarray  # float32 (H, W), in pixels: slopes are geometric
    albedo: np.ndarray | float = 1.0  # material brightness (deep or dark material < 1 < metal)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur through the FFT with mirrored edges: no SciPy, and any sigma costs the same."""
    if sigma < 0.3:
        return image
    pad = int(3 * sigma) + 1
    padded = np.pad(image, pad, mode="symmetric")
    freq_y = np.fft.fftfreq(padded.shape[0])[:, None]
    freq_x = np.fft.rfftfreq(padded.shape[1])[None, :]
    transfer = np.exp(-2 * (math.pi * sigma) ** 2 * (freq_y**2 + freq_x**2))
    blurred = np.fft.irfft2(np.fft.rfft2(padded) * transfer, s=padded.shape)
    return blurred[pad:-pad, pad:-pad].astype(np.float32)


def smooth_noise(rng, shape, scale: float) -> np.ndarray:
    """Zero-mean, unit-variance random field whose blobs are about `scale` pixels across."""
    field = blur(rng.standard_normal(shape, dtype=np.float32), scale)
    return (field - field.mean()) / (field.std() + 1e-12)


def _cells(rng, canvas: Canvas, cell: float):
    """Cellular (Worley) noise: distances to the nearest and second-nearest of random seed points
    (one per `cell`-sized square) and the nearest seed's id; grains, pores and cracks come from it."""
    rows, cols = math.ceil(canvas.height / cell) + 2, math.ceil(canvas.width / cell) + 2
    seed_y = (np.arange(rows)[:, None] - 1 + rng.random((rows, cols))) * cell
    seed_x = (np.arange(cols)[None, :] - 1 + rng.random((rows, cols))) * cell
    yy, xx = canvas.coordinates()
    home_row, home_col = (yy // cell).astype(int) + 1, (xx // cell).astype(int) + 1
    nearest = np.full(canvas.shape, np.inf, np.float32)
    second = np.full(canvas.shape, np.inf, np.float32)
    nearest_id = np.zeros(canvas.shape, int)
    for d_row in (-1, 0, 1):  # the nearest seed always lies in the 3 x 3 squares around a pixel
        for d_col in (-1, 0, 1):
            row, col = home_row + d_row, home_col + d_col
            distance = np.hypot(seed_y[row, col] - yy, seed_x[row, col] - xx)
            closer = distance < nearest
            second = np.where(closer, nearest, np.minimum(second, distance))
            nearest_id = np.where(closer, row * cols + col, nearest_id)
            nearest = np.where(closer, distance, nearest)
    return nearest, second, nearest_id, rows * cols


def _stamp(height: np.ndarray, y: float, x: float, patch: np.ndarray) -> None:
    """Max-blend `patch` centred at (y, x) into `height`: touching solids merge; edges clip."""
    top, left = int(round(y)) - patch.shape[0] // 2, int(round(x)) - patch.shape[1] // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + patch.shape[0], height.shape[0]), min(left + patch.shape[1], height.shape[1])
    if y0 < y1 and x0 < x1:
        region = height[y0:y1, x0:x1]
        np.maximum(region, patch[y0 - top:y1 - top, x0 - left:x1 - left], out=region)


def _patch_grid(reach: float) -> tuple[np.ndarray, np.ndarray]:
    half = int(math.ceil(reach)) + 1
    return np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)


def _capsule(radius: float, half_length: float = 0.0, angle: float = 0.0) -> np.ndarray:
    """Height of a rod with round ends lying in the image plane (a sphere when half_length is 0)."""
    yy, xx = _patch_grid(radius + half_length)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    across = -xx * math.sin(angle) + yy * math.cos(angle)
    overhang = np.maximum(np.abs(along) - half_length, 0)
    return np.sqrt(np.maximum(radius**2 - overhang**2 - across**2, 0))


def _scattered_points(rng, canvas: Canvas, count: int, min_distance: float) -> np.ndarray:
    """Up to `count` random (y, x) points at least `min_distance` apart ("dart throwing"): objects
    spread at random without overlapping, unlike a grid, which would look like a pattern."""
    accepted = np.empty((0, 2))
    for point in rng.uniform((0, 0), canvas.shape, (count, 2)):
        if not len(accepted) or np.min(np.hypot(*(accepted - point).T)) >= min_distance:
            accepted = np.vstack([accepted, point])
    return accepted


def _wandering_path(rng, start, heading: float, length: float, steps: int, bend: float) -> list:
    """Points (x, y) of a curve whose heading turns a little at each step (a random walk)."""
    headings = heading + np.cumsum(rng.normal(0, bend, steps))
    xs = start[0] + np.concatenate([[0], np.cumsum(np.cos(headings))]) * length / steps
    ys = start[1] + np.concatenate([[0], np.cumsum(np.sin(headings))]) * length / steps
    return list(zip(xs.tolist(), ys.tolist()))


def _float_canvas(canvas: Canvas):
    """A Pillow float image to draw heights with lines, polygons and rectangles."""
    image = Image.new("F", (canvas.width, canvas.height), 0.0)
    return image, ImageDraw.Draw(image)


def _width_px(width: float) -> int:
    return max(1, round(width))


# ---------------------------------------------------------------------------------------------
# Morphologies: one function per category, returning the Surface


def _draw_particles(rng, canvas: Canvas) -> Surface:
    """Isolated spheres of nearly one size on a flat substrate."""
    radius = rng.uniform(7, 14) * canvas.unit
    count = int(rng.uniform(0.1, 0.4) * canvas.height * canvas.width / (math.pi * radius**2))
    height = np.zeros(canvas.shape, np.float32)
    for y, x in _scattered_points(rng, canvas, count, 2.1 * radius):
        _stamp(height, y, x, _capsule(radius * rng.normal(1, 0.07)))
    return Surface(height)


def _draw_powder(rng, canvas: Canvas) -> Surface:
    """A dense heap of angular grains of very different sizes, each grain a tilted facet."""
    median = rng.uniform(12, 24) * canvas.unit
    # Draw plenty of grain sizes, keep as many as cover the image 1.3-2 times (a grain of size s
    # covers about 1.6 s^2).
    sizes = np.clip(median * rng.lognormal(0, 0.55, 4000), 2 * canvas.unit, 50 * canvas.unit)
    cover = np.cumsum(1.6 * sizes**2) < rng.uniform(1.3, 2.0) * canvas.height * canvas.width
    sizes = sizes[: max(1, int(cover.sum()))]
    centres = rng.uniform((0, 0), (canvas.width, canvas.height), (len(sizes), 2))
    labels_image = Image.new("I", (canvas.width, canvas.height), 0)
    draw = ImageDraw.Draw(labels_image)
    for label, (size, (cx, cy)) in enumerate(zip(sizes, centres), start=1):  # later grains lie on top
        corners = rng.integers(5, 9)
        angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
        radii = size * rng.uniform(0.55, 1.0, corners)
        draw.polygon(list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles))), fill=label)
    labels = np.asarray(labels_image)
    # Per grain (index 0 = bare substrate): level, facet tilt and brightness, looked up per pixel.
    level = np.concatenate([[0], 0.8 * sizes + 2 * canvas.unit * np.arange(len(sizes)) / len(sizes)])
    tilt = np.concatenate([[(0, 0)], rng.uniform(-0.7, 0.7, (len(sizes), 2))])
    centre = np.concatenate([[(0, 0)], centres])
    albedo = np.concatenate([[0.7], rng.uniform(0.75, 1.25, len(sizes))]).astype(np.float32)
    yy, xx = canvas.coordinates()
    height = (level[labels] + tilt[labels, 0] * (xx - centre[labels, 0])
              + tilt[labels, 1] * (yy - centre[labels, 1]))
    return Surface(height.astype(np.float32), albedo[labels])


def _draw_nanowires(rng, canvas: Canvas) -> Surface:
    """Many long, thin, nearly straight wires over a dark substrate: a loose mat lying on it, or an
    upright forest (merged class, docs/background.md: Data). Sparse bright lines, unlike Porous_Sponge's
    mostly bright solid with dark holes."""
    forest = rng.random() < 0.35
    thickness = rng.uniform(2.5, 4.5) * canvas.unit
    count = int(canvas.area_units / 400 * rng.uniform(0.3, 0.8) * (1.5 if forest else 1.0))
    image, draw = _float_canvas(canvas)
    for order in range(max(count, 3)):
        start = rng.uniform((0, 0), (canvas.width, canvas.height * (1.3 if forest else 1.0)))
        if forest:  # standing wires, seen from the side, converge on "up" with some spread
            path = _wandering_path(rng, start, -math.pi / 2 + rng.normal(0, 0.15),
                                   rng.uniform(60, 160) * canvas.unit, 6, 0.03)
        else:
            path = _wandering_path(rng, start, rng.uniform(0, 2 * math.pi), rng.uniform(60, 180) * canvas.unit, 8, 0.06)
        wire = thickness * rng.normal(1, 0.1)
        draw.line(path, fill=float(wire * (2 + order / count)), width=_width_px(wire), joint="curve")
    height = np.asarray(image, dtype=np.float32)
    return Surface(height, np.where(height > 0, 1.0, rng.uniform(0.35, 0.6)).astype(np.float32))


def _draw_fibres(rng, canvas: Canvas) -> Surface:
    """A few thick fibres crossing the field in gentle curves, rounded like cylinders, over a dark gap."""
    radius = rng.uniform(6, 14) * canvas.unit
    diagonal = math.hypot(canvas.width, canvas.height)
    image, draw = _float_canvas(canvas)
    for _ in range(rng.integers(3, 10)):  # drawn in order: a later fibre lies over an earlier one
        fibre = radius * rng.normal(1, 0.15)
        heading = rng.uniform(0, 2 * math.pi)
        through = rng.uniform((0, 0), (canvas.width, canvas.height))
        start = through - 0.7 * diagonal * np.array([math.cos(heading), math.sin(heading)])
        path = _wandering_path(rng, start, heading, 1.4 * diagonal, 14, 0.05)
        for step in np.linspace(0, 1.4, 6):  # nested strokes, narrower and higher: a round profile
            draw.line(path, fill=float(fibre * (1 + math.sin(step))), width=_width_px(2 * fibre * math.cos(step)),
                      joint="curve")
    height = np.asarray(image, dtype=np.float32)
    return Surface(height, np.where(height > 0, 1.0, rng.uniform(0.3, 0.6)).astype(np.float32))


def _draw_film(rng, canvas: Canvas) -> Surface:
    """A continuous coating, no separate objects: packed grains, or a smooth film with a few cracks."""
    if rng.random() < 0.5:
        return _grainy_film(rng, canvas)
    return _smooth_film(rng, canvas)


def _grainy_film(rng, canvas: Canvas) -> Surface:
    cell = rng.uniform(14, 28) * canvas.unit
    nearest, second, grain, grains = _cells(rng, canvas, cell)
    groove = np.exp(-(((second - nearest) / (0.8 * canvas.unit + 0.5)) ** 2))
    level = rng.uniform(0, 0.15 * cell, grains).astype(np.float32)
    height = level[grain] - 0.25 * cell * (nearest / cell) ** 2 - 0.2 * cell * groove
    albedo = rng.uniform(0.9, 1.1, grains).astype(np.float32)[grain]
    return Surface(height.astype(np.float32), albedo)


def _smooth_film(rng, canvas: Canvas) -> Surface:
    height = (6 * canvas.unit * smooth_noise(rng, canvas.shape, 40 * canvas.unit)
              + 0.3 * canvas.unit * smooth_noise(rng, canvas.shape, 1.5 * canvas.unit))
    albedo = np.ones(canvas.shape, np.float32)
    if rng.random() < 0.7:  # a drying or stressed coating cracks into plates
        nearest, second, _, _ = _cells(rng, canvas, rng.uniform(40, 90) * canvas.unit)
        crack = (second - nearest) < rng.uniform(1.0, 2.5) * canvas.unit
        height = height - 4 * canvas.unit * crack
        albedo[crack] = 0.5
    return Surface(height.astype(np.float32), albedo)


def _draw_porous(rng, canvas: Canvas) -> Surface:
    """A bright solid riddled with dark pores: round pores of mixed sizes, or an open sponge network."""
    if rng.random() < 0.5:
        field = (smooth_noise(rng, canvas.shape, rng.uniform(5, 10) * canvas.unit)
                 + 0.4 * smooth_noise(rng, canvas.shape, 1.5 * canvas.unit))
        pore = field < np.quantile(field, rng.uniform(0.35, 0.55))
    else:
        pore = np.zeros(canvas.shape, bool)
        for scale in (rng.uniform(14, 28), rng.uniform(6, 10)):
            nearest, _, cell_id, cells = _cells(rng, canvas, scale * canvas.unit)
            pore_radius = rng.uniform(0.15, 0.45, cells) * scale * canvas.unit
            pore |= nearest < pore_radius[cell_id]
    depth = rng.uniform(5, 10) * canvas.unit
    return Surface(np.where(pore, -depth, 0).astype(np.float32),
                   np.where(pore, rng.uniform(0.2, 0.35), 1.0).astype(np.float32))


def _draw_pattern(rng, canvas: Canvas) -> Surface:
    """A perfectly periodic array of pillars, holes or square posts on a square or hexagonal lattice
    (the former Pillars class was merged into this one, docs/background.md: Data)."""
    period = rng.uniform(22, 40) * canvas.unit
    size = period * rng.uniform(0.2, 0.38)
    angle = rng.choice([0.0, math.pi / 4, rng.uniform(0, math.pi)])
    yy, xx = canvas.coordinates()
    along = xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, period)
    across = -xx * math.sin(angle) + yy * math.cos(angle) + rng.uniform(0, period)
    if rng.random() < 0.5:
        offsets = [np.stack(_lattice_offsets(along, across, period, period))]
    else:  # hexagonal: two rectangular sub-lattices, the second shifted by half a cell
        row = period * math.sqrt(3)
        offsets = [np.stack(_lattice_offsets(along, across, period, row)),
                   np.stack(_lattice_offsets(along + period / 2, across + row / 2, period, row))]
    if rng.random() < 0.3:  # square posts: Chebyshev distance to the nearest node
        distance = np.min([np.abs(offset).max(0) for offset in offsets], 0)
    else:
        distance = np.min([np.hypot(*offset) for offset in offsets], 0)
    inside = distance < size
    if rng.random() < 0.35:  # holes instead of pillars: dark inside
        return Surface(np.where(inside, -rng.uniform(4, 10) * canvas.unit, 0).astype(np.float32),
                       np.where(inside, 0.35, 1.0).astype(np.float32))
    return Surface(np.where(inside, rng.uniform(3, 10) * canvas.unit, 0).astype(np.float32))


def _lattice_offsets(along, across, spacing_along: float, spacing_across: float):
    """Offset of every pixel from the nearest node of a rectangular lattice."""
    return ((along % spacing_along) - spacing_along / 2, (across % spacing_across) - spacing_across / 2)


def _draw_mems(rng, canvas: Canvas) -> Surface:
    """Large rectangular device structures in bright metal on a darker substrate: interdigitated comb
    electrodes, contact pads joined by tracks, or an array of released beams."""
    turned = rng.random() < 0.5  # draw on the transposed canvas, then turn back
    board = Canvas(canvas.width, canvas.height, canvas.unit) if turned else canvas
    image, draw = _float_canvas(board)
    layer = float(rng.uniform(3, 6) * canvas.unit)
    (_comb_electrodes, _pads_and_tracks, _beam_array)[rng.integers(3)](rng, board, draw, layer)
    height = np.asarray(image, dtype=np.float32)
    if turned:
        height = np.ascontiguousarray(height.T)
    return Surface(height, np.where(height > 0, rng.uniform(1.1, 1.4), rng.uniform(0.6, 0.9)).astype(np.float32))


def _comb_electrodes(rng, board: Canvas, draw, layer: float) -> None:
    finger, gap = rng.uniform(5, 12) * board.unit, rng.uniform(4, 10) * board.unit
    top_bar = rng.uniform(0.05, 0.25) * board.height
    bottom_bar = rng.uniform(0.75, 0.95) * board.height
    bar = rng.uniform(12, 25) * board.unit
    draw.rectangle([0, top_bar - bar, board.width, top_bar], fill=layer)
    draw.rectangle([0, bottom_bar, board.width, bottom_bar + bar], fill=layer)
    x, from_top = rng.uniform(-finger - gap, 0), bool(rng.integers(2))
    while x < board.width:
        if from_top:
            draw.rectangle([x, top_bar, x + finger, bottom_bar - gap], fill=layer)
        else:
            draw.rectangle([x, top_bar + gap, x + finger, bottom_bar], fill=layer)
        x, from_top = x + finger + gap, not from_top


def _pads_and_tracks(rng, board: Canvas, draw, layer: float) -> None:
    pads = []
    for _ in range(rng.integers(2, 6)):
        side = rng.uniform(35, 90) * board.unit
        x, y = rng.uniform(-side / 3, board.width - side / 2), rng.uniform(-side / 3, board.height - side / 2)
        draw.rectangle([x, y, x + side, y + side], fill=layer)
        pads.append((x + side / 2, y + side / 2))
    track = _width_px(rng.uniform(4, 10) * board.unit)
    for (x0, y0), (x1, y1) in zip(pads, pads[1:]):  # right-angle routing between neighbouring pads
        draw.line([(x0, y0), (x1, y0), (x1, y1)], fill=layer, width=track)


def _beam_array(rng, board: Canvas, draw, layer: float) -> None:
    anchor = rng.uniform(0.05, 0.3) * board.width
    draw.rectangle([0, 0, anchor, board.height], fill=layer)
    beam, pitch = rng.uniform(5, 12) * board.unit, rng.uniform(20, 40) * board.unit
    for y in np.arange(rng.uniform(0, pitch), board.height, pitch):
        length = rng.uniform(60, 200) * board.unit
        draw.rectangle([anchor, y, anchor + length, y + beam], fill=layer)


def _draw_tip(rng, canvas: Canvas) -> Surface:
    """One large sharp tip: a pyramid seen from above, or a cone on its cantilever seen from the side."""
    apex = rng.uniform((0.3 * canvas.width, 0.3 * canvas.height), (0.7 * canvas.width, 0.7 * canvas.height))
    if rng.random() < 0.4:
        return Surface(_pyramid(rng, canvas, apex))
    return Surface(_cone_on_cantilever(rng, canvas, apex))


def _pyramid(rng, canvas: Canvas, apex) -> np.ndarray:
    """A 3- or 4-sided pyramid seen from above: flat facets meeting at the apex."""
    half_base = rng.uniform(50, 110) * canvas.unit
    sides = int(rng.choice([3, 4]))
    facing = rng.uniform(0, 2 * math.pi) + 2 * math.pi * np.arange(sides) / sides
    yy, xx = canvas.coordinates()
    reach = np.max([(xx - apex[0]) * math.cos(a) + (yy - apex[1]) * math.sin(a) for a in facing], 0)
    return (rng.uniform(0.7, 1.2) * np.maximum(half_base - reach, 0)).astype(np.float32)


def _cone_on_cantilever(rng, canvas: Canvas, apex) -> np.ndarray:
    """A cone (round cross-section) whose axis lies in the image plane, apex at `apex`, base on a
    cantilever beam that runs out of the image."""
    axis = rng.uniform(0, 2 * math.pi)  # direction from apex to base
    length = rng.uniform(100, 220) * canvas.unit
    half_angle = math.radians(rng.uniform(12, 32))
    yy, xx = canvas.coordinates()
    along = (xx - apex[0]) * math.cos(axis) + (yy - apex[1]) * math.sin(axis)
    across = -(xx - apex[0]) * math.sin(axis) + (yy - apex[1]) * math.cos(axis)
    cone_radius = np.clip(along, 0, length) * math.tan(half_angle)
    cone = np.sqrt(np.maximum(cone_radius**2 - across**2, 0)) * ((along > 0) & (along < length))
    base_radius = length * math.tan(half_angle)
    beam_half_width = base_radius * rng.uniform(1.2, 2)
    beam = ((along > length - base_radius) & (np.abs(across) < beam_half_width)) * 0.5 * base_radius
    return np.maximum(cone, beam).astype(np.float32)


def _draw_biological(rng, canvas: Canvas) -> Surface:
    """Soft rounded organic shapes: spread cells with ruffled outlines, rod bacteria in clusters, or
    red blood cells (biconcave discs)."""
    height = np.zeros(canvas.shape, np.float32)
    (_spread_cells, _rod_bacteria, _red_blood_cells)[rng.integers(3)](rng, canvas, height)
    ruffles = 0.25 * canvas.unit * smooth_noise(rng, canvas.shape, 1.5 * canvas.unit)
    return Surface(height + ruffles * (height > 0))


def _spread_cells(rng, canvas: Canvas, height: np.ndarray) -> None:
    for _ in range(rng.integers(2, 7)):
        radius = rng.uniform(22, 50) * canvas.unit
        y, x = rng.uniform((0, 0), canvas.shape)
        _stamp(height, y, x, _cell_body(rng, radius))


def _cell_body(rng, radius: float) -> np.ndarray:
    """A flat, soft-edged dome (a spread cell) with a wobbly outline and a raised nucleus."""
    yy, xx = _patch_grid(1.4 * radius)
    theta = np.arctan2(yy, xx)
    outline = np.ones_like(theta)
    for lobes in range(2, 6):
        outline += rng.uniform(0, 0.12) * np.cos(lobes * theta + rng.uniform(0, 2 * math.pi))
    rho = np.hypot(yy, xx) / (radius * outline)
    body = 0.3 * radius * np.maximum(1 - rho**2, 0)
    nucleus = 0.15 * radius * np.exp(-((rho / 0.3) ** 2))
    return (body + nucleus) * (rho < 1)


def _rod_bacteria(rng, canvas: Canvas, height: np.ndarray) -> None:
    clusters = rng.uniform((0, 0), canvas.shape, (rng.integers(1, 4), 2))
    radius = rng.uniform(4, 6) * canvas.unit
    for _ in range(rng.integers(15, 50)):
        y, x = clusters[rng.integers(len(clusters))] + rng.normal(0, 40 * canvas.unit, 2)
        half_length = rng.uniform(5, 15) * canvas.unit
        _stamp(height, y, x, _capsule(radius, half_length, rng.uniform(0, math.pi)))


def _red_blood_cells(rng, canvas: Canvas, height: np.ndarray) -> None:
    """Crowded biconcave discs, squashed to ellipses: larger and softer than Particles' spheres."""
    for _ in range(rng.integers(8, 25)):
        radius = rng.uniform(18, 28) * canvas.unit
        squash, angle = rng.uniform(1.0, 1.35), rng.uniform(0, math.pi)
        y, x = rng.uniform((0, 0), canvas.shape)
        yy, xx = _patch_grid(radius)
        along = xx * math.cos(angle) + yy * math.sin(angle)
        across = (-xx * math.sin(angle) + yy * math.cos(angle)) * squash
        rho2 = np.minimum((along**2 + across**2) / radius**2, 1)
        # Evans-Fung thickness profile of a red blood cell (thin centre, thick rim), as radius fractions
        thickness = np.sqrt(1 - rho2) * (0.81 + 7.83 * rho2 - 4.39 * rho2**2) / 7.82
        _stamp(height, y, x, radius * thickness)


@dataclass(frozen=True)
class Morphology:
    draw: Callable[[np.random.Generator, Canvas], Surface]
    unit_m: float  # physical length of one unit: sets pixel size and magnification in the metadata


# Unit lengths put typical features at their real size: particles 14-28 units across are
# 170-340 nm, fibres 12-28 units thick 8-20 µm, nanowires 2.5-4.5 units thick 50-90 nm.
MORPHOLOGIES = {
    "Biological": Morphology(_draw_biological, 150e-9),
    "Fibres": Morphology(_draw_fibres, 700e-9),
    "Films_Coated_Surface": Morphology(_draw_film, 6e-9),
    "MEMS_devices_electrodes": Morphology(_draw_mems, 250e-9),
    "Nanowires": Morphology(_draw_nanowires, 20e-9),
    "Particles": Morphology(_draw_particles, 12e-9),
    "Patterned_surface": Morphology(_draw_pattern, 25e-9),
    "Porous_Sponge": Morphology(_draw_porous, 80e-9),
    "Powder": Morphology(_draw_powder, 1e-6),
    "Tips": Morphology(_draw_tip, 100e-9),
}
