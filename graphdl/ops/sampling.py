"""Sampling at computed positions: `grid_sample` reads an image (or volume) at the points of a
grid, `affine_grid` makes the grid of an affine map, as PyTorch's spatial transformer pair.

The points are data (a node), so the reads are gathers at computed indices (`take_along_axis`
on the flattened spatial axes), weighted by the points' distances to the pixels around them:
the gradient to the image is the gathers' scatter-add, the gradient to the grid flows through
those distances (each tap's weight is linear in the point's coordinates between two pixels).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from graphdl.errors import GraphError
from graphdl.ir import describe, format_shape
from graphdl.ops import elementwise as ew
from graphdl.ops import indexing as ix
from graphdl.ops import leaf
from graphdl.ops import logic as lg
from graphdl.ops import movement as mv
from graphdl.ops.composite import _floating, _named, composite
from graphdl.ops.matmul import matmul

MODES = ("bilinear", "nearest")
PADDINGS = ("zeros", "border", "reflection")


@composite("grid_sample", "GridSample",
           "dL/dinput = g scattered to the taps by their weights, dL/dgrid = Σ_taps "
           "g·input·(d weight/d point)",
           mv.RESHAPE, arity=None)
def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False):
    """input (N, C, H, W) read at grid (N, Ho, Wo, 2)'s points, as
    torch.nn.functional.grid_sample: a point (x, y) in [-1, 1] spans the input's width and
    height (x first), to the pixels' centers (align_corners=False) or to the corner pixels'
    centers (True); `mode` bilinear (4 taps) or nearest (ties to even); points outside read
    zeros, the border pixels, or the input reflected at its edges (`padding_mode`). A 5-D
    input (N, C, D, H, W) takes a grid (N, Do, Ho, Wo, 3) of (x, y, z) points (trilinear)."""
    what = "grid_sample"
    x, grid = _floating(input, what), _floating(grid, what)
    if mode not in MODES:
        raise GraphError(f"{what}: mode {mode!r} is not one of {MODES} (bicubic: not supported)")
    if padding_mode not in PADDINGS:
        raise GraphError(f"{what}: padding_mode {padding_mode!r} is not one of {PADDINGS}")
    spatial = x.shape[2:]
    k = len(spatial)
    if x.ndim not in (4, 5) or grid.ndim != x.ndim or grid.shape[-1] != k \
            or grid.shape[0] != x.shape[0]:
        raise GraphError(f"{what}: input {describe(x)} {format_shape(x.shape)} and grid "
                         f"{describe(grid)} {format_shape(grid.shape)} are not (N, C, H, W) and "
                         f"(N, Ho, Wo, 2), or (N, C, D, H, W) and (N, Do, Ho, Wo, 3)")
    if None in spatial or x.shape[1] is None or None in grid.shape[1:-1]:
        raise GraphError(f"{what}: {describe(x)} {format_shape(x.shape)} and {describe(grid)} "
                         f"{format_shape(grid.shape)} need every axis but the batch known")
    if grid.dtype != x.dtype:
        raise GraphError(f"{what}: grid {describe(grid)} has dtype {grid.dtype}, input "
                         f"{describe(x)} {x.dtype}; convert one with gd.cast")
    # the point's coordinate along each spatial axis (x's order: grid's last entry first)
    points = [_source(mv.getitem(grid, (slice(None),) * (k + 1) + (k - 1 - d,)), n, padding_mode,
                      align_corners)
              for d, n in enumerate(spatial)]
    taps = _nearest(points) if mode == "nearest" else _linear(points)
    flat = mv.reshape(x, (-1, x.shape[1], math.prod(spatial)))
    out_points = math.prod(grid.shape[1:-1])
    total = None
    for indices, weight in taps:
        inside = position = None  # a tap outside the input reads 0 (any padding)
        for d, (i, n) in enumerate(zip(indices, spatial)):
            ok = lg.LOGICAL_AND(ew.GREATER_EQUAL(i, 0), ew.LESS_EQUAL(i, n - 1))
            inside = ok if inside is None else lg.LOGICAL_AND(inside, ok)
            safe = ew.cast(ew.MINIMUM(ew.MAXIMUM(i, 0), n - 1), "int64")
            stride = math.prod(spatial[d + 1:])
            term = safe * stride if stride > 1 else safe
            position = term if position is None else position + term
        position = mv.reshape(position, (-1, 1, out_points))
        if x.shape[0] is None:  # take_along_axis broadcasts known shapes only: over C here
            position = position + leaf.constant(np.zeros((1, x.shape[1], 1), np.int64))
        read = ix.take_along_axis(flat, position, 2)
        weight = ew.WHERE(inside, weight, 0)
        term = read * mv.reshape(weight, (-1, 1, out_points))
        total = term if total is None else total + term
    return _named(mv.reshape(total, (-1, x.shape[1], *grid.shape[1:-1])), "grid_sample")


def _source(coordinate, size, padding_mode, align_corners):
    """The point's position in pixels along an axis of `size` pixels, after padding_mode's
    border (clipped) or reflection (reflected at the edges, then clipped)."""
    if align_corners:
        position = (coordinate + 1) * ((size - 1) / 2)
    else:
        position = ((coordinate + 1) * size - 1) / 2
    if padding_mode == "border":
        return _clamped(position, size)
    if padding_mode == "reflection":
        low, high = (0, size - 1) if align_corners else (-0.5, size - 0.5)
        return _clamped(_reflected(position, low, high), size)
    return position


def _clamped(position, size):
    """position clipped to the pixels [0, size − 1], its gradient passed strictly inside only:
    PyTorch's grid_sample passes none at the bounds themselves (unlike its clamp)."""
    low, high = ew.LESS_EQUAL(position, 0), ew.GREATER_EQUAL(position, size - 1)
    return ew.WHERE(low, 0.0, ew.WHERE(high, float(size - 1), position))


def _reflected(position, low, high):
    """position reflected into [low, high] (as light between two mirrors)."""
    span = high - low
    if span <= 0:
        return leaf.zeros_like(position)
    offset = position - low
    away = ew.WHERE(ew.LESS(offset, 0), -offset, offset)  # at low: slope +1, as PyTorch's
    flips = ew.FLOOR(away / span)
    extra = away - flips * span
    even = ew.EQUAL(ew.remainder(flips, 2), 0)
    return ew.WHERE(even, extra + low, high - extra)


def _linear(points):
    """(indices, weight) of each of the 2^k corners around the points: the pixels below and
    above each coordinate, weighted by the product of the distances to the opposite ones."""
    below = [ew.FLOOR(p) for p in points]
    near = [(b, 1 - (p - b)) for b, p in zip(below, points)]
    far = [(b + 1, p - b) for b, p in zip(below, points)]
    corners = []
    for choice in itertools.product(*zip(near, far)):
        weight = choice[0][1]
        for _, w in choice[1:]:
            weight = weight * w
        corners.append(([i for i, _ in choice], weight))
    return corners


def _nearest(points):
    """The one tap at the nearest pixel (ties to even, as PyTorch's nearbyint), weight 1."""
    indices = [ew.round(p) for p in points]
    return [(indices, leaf.zeros_like(points[0]) + 1)]


@composite("affine_grid", "AffineGrid",
           "dL/dtheta = Σ_points g·[x y 1] (the grid is linear in theta)",
           mv.RESHAPE, arity=None)
def affine_grid(theta, size, align_corners=False):
    """The grid (N, H, W, 2) of points theta · (x, y, 1) over the output of `size` (N, C, H,
    W), theta (N, 2, 3), x and y spanning [-1, 1] as grid_sample reads them; 3-D: theta
    (N, 3, 4), size (N, C, D, H, W), grid (N, D, H, W, 3). As
    torch.nn.functional.affine_grid."""
    what = "affine_grid"
    theta = _floating(theta, what)
    size = tuple(int(n) for n in size)
    k = len(size) - 2
    if k not in (2, 3) or theta.shape[1:] != (k, k + 1) or min(size) < 1:
        raise GraphError(f"{what}: theta {describe(theta)} {format_shape(theta.shape)} and size "
                         f"{size} are not (N, 2, 3) and (N, C, H, W), or (N, 3, 4) and "
                         f"(N, C, D, H, W)")
    if theta.shape[0] not in (None, size[0]):
        raise GraphError(f"{what}: theta {describe(theta)} has {theta.shape[0]} maps, size "
                         f"{size} a batch of {size[0]}")
    # each output point's (x, y[, z], 1): the last spatial axis is x
    axes = [_span(n, align_corners) for n in size[:1:-1]]
    mesh = np.meshgrid(*axes[::-1], indexing="ij")[::-1]
    base = np.stack([*mesh, np.ones_like(mesh[0])], -1).reshape(-1, k + 1)
    points = matmul(leaf.constant(base.astype(theta.dtype)), mv.transpose(theta, (0, 2, 1)))
    return _named(mv.reshape(points, (-1, *size[2:], k)), "affine_grid")


def _span(n, align_corners):
    """The coordinates in [-1, 1] of n pixels: their centers, or the end pixels' centers at ±1."""
    if n == 1:
        return np.zeros(1)
    return np.linspace(-1, 1, n) if align_corners else (np.arange(n) * 2 + 1) / n - 1
