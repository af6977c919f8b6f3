"""Where criss-cross attention looks: per-pixel attention maps of each loop, composed over loops.

Loop ``r`` of a recurrent criss-cross attention head is a row-stochastic ``(N, N)`` matrix
``A_r`` over the ``N`` feature positions: row ``i`` holds the weights position ``i`` gives the
positions on its criss-cross path (row and column in 2D; T-, H- and W-lines in 3D), computed
from the loop's own input by the block's own query/key convs and the op's own energy code
(`ccnet.nn.CrissCrossAttention.attention_weights`). Nothing here re-implements energies.

For a position ``p`` (one-hot row vector ``e_p``):

* ``crosses[r]`` is ``e_p A_r``: loop ``r``'s own attention of ``p``, non-zero only on its
  criss-cross path;
* ``loops[r]`` is ``e_p A_r A_{r-1} ... A_1``: the **effective map** after ``r`` loops, the share
  of every position of the first loop's input in what ``p`` receives through the ``r`` attention
  steps (a path ``p -> q -> s`` weighs ``A_2[p, q] * A_1[q, s]``). It sums to 1; after one loop it
  is the cross, after two it covers the image (2D) or the planes through ``p`` (3D), after three
  the whole volume. This is the composition the paper's figure shows; the residual ``+ x`` path
  and the value projection are left out (the value conv mixes channels, so their share is not a
  scalar per position).

The maps are computed exactly (no sampling, no gradients) by propagating the one-hot rows
through the sparse per-line weights: ``O(N * sum(spatial))`` per loop and position.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ccnet.errors import InputError
from ccnet.models.ccnet3d import CCNet3D
from ccnet.nn.attention import CrissCrossAttention, CrissCrossAttention3d

__all__ = [
    "AttentionMaps",
    "AttentionRecord",
    "attention_maps",
    "compose_loops",
    "feature_index",
    "layer_attention_maps",
    "propagate",
    "record_attention",
    "record_attention_inputs",
]

CRISS_CROSS_BLOCKS = (CrissCrossAttention, CrissCrossAttention3d)


@dataclass
class AttentionMaps:
    """Attention maps of ``P`` pixels through ``R`` loops, at feature resolution.

    ``pixels``: the requested pixels in input coordinates (``(y, x)``, or ``(t, y, x)`` for video);
    ``positions``: the feature positions they fall on; ``loops``: ``(P, R, *feature_size)``
    effective maps after loops 1..R (each sums to 1); ``crosses``: ``(P, R, *feature_size)`` each
    loop's own attention of the pixel; ``logits``: the model's output for the input
    (``(1, K, *input_size)``), so a caller needs no second forward for the prediction.
    """

    pixels: list[tuple[int, ...]]
    positions: list[tuple[int, ...]]
    feature_size: tuple[int, ...]
    loops: Tensor
    crosses: Tensor
    logits: Tensor | None = None

    @property
    def recurrence(self) -> int:
        return self.loops.shape[1]


def propagate(maps: Tensor, weights: Sequence[Tensor]) -> Tensor:
    """``maps @ A`` for one loop's attention ``A`` given as per-axis line weights.

    Args:
        maps: ``(B, P, *spatial)``, ``P`` row vectors over the positions of each batch element.
        weights: the loop's weights, one ``(B, *spatial, L_axis)`` tensor per spatial axis, as
            `ccnet.ops.criss_cross_attention_weights` returns them.

    Returns:
        ``(B, P, *spatial)``: ``out[j] = sum_i maps[i] * A[i, j]``, ``i`` over the positions on
        ``j``'s lines.
    """
    spatial = maps.shape[2:]
    if len(weights) != len(spatial):
        raise ValueError(f"{len(weights)} weight tensors for {len(spatial)} spatial axes")
    maps = maps.to(weights[0].dtype)
    out = torch.zeros_like(maps)
    for axis, weight in enumerate(weights):
        if weight.shape != (maps.shape[0], *spatial, spatial[axis]):
            raise ValueError(f"weights of axis {axis} have shape {tuple(weight.shape)}, expected "
                             f"{(maps.shape[0], *spatial, spatial[axis])}")
        # On the lines along this axis: (B, P, *others, 1, L_i) @ (B, 1, *others, L_i, L_j).
        lines = maps.movedim(axis + 2, -1).unsqueeze(-2)
        mixing = weight.movedim(axis + 1, -2).unsqueeze(1)
        out += (lines @ mixing).squeeze(-2).movedim(-1, axis + 2)
    return out


def compose_loops(
    loop_weights: Sequence[Sequence[Tensor]], positions: Sequence[Sequence[int]]
) -> tuple[Tensor, Tensor]:
    """Effective maps and per-loop crosses of ``positions`` (feature coordinates, the same for
    every batch element) through the loops whose weights are given in loop order.

    Returns ``(loops, crosses)``, both ``(B, P, R, *spatial)``: see the module docstring.
    """
    if not loop_weights:
        raise ValueError("no attention loops to compose")
    batch, *spatial = loop_weights[0][0].shape[:-1]
    onehot = torch.zeros(batch, len(positions), *spatial, dtype=loop_weights[0][0].dtype,
                         device=loop_weights[0][0].device)
    for index, position in enumerate(positions):
        if len(position) != len(spatial) or not all(0 <= c < n for c, n in zip(position, spatial, strict=True)):
            raise ValueError(f"position {tuple(position)} is outside the {'x'.join(map(str, spatial))} feature map")
        onehot[(slice(None), index, *position)] = 1.0
    loops, crosses = [], []
    for last in range(len(loop_weights)):
        crosses.append(propagate(onehot, loop_weights[last]))
        maps = crosses[-1]
        for earlier in reversed(loop_weights[:last]):
            maps = propagate(maps, earlier)
        loops.append(maps)
    return torch.stack(loops, dim=2), torch.stack(crosses, dim=2)


@torch.no_grad()
def layer_attention_maps(
    block: CrissCrossAttention | CrissCrossAttention3d,
    x: Tensor,
    positions: Sequence[Sequence[int]],
    recurrence: int = 2,
) -> tuple[Tensor, Tensor]:
    """Runs ``block`` ``recurrence`` times on ``x`` (shared weights, as the RCCA head does) and
    returns ``(loops, crosses)`` of ``positions``, both ``(B, P, R, *spatial)``.

    ``x`` is a ``(B, C, H, W)`` feature map for `ccnet.nn.CrissCrossAttention` or
    ``(B, C, T, H, W)`` for `ccnet.nn.CrissCrossAttention3d`; ``positions`` are
    ``(y, x)`` / ``(t, y, x)`` feature coordinates.
    """
    if recurrence < 1:
        raise ValueError(f"recurrence must be >= 1, got {recurrence}")
    weights = []
    for _ in range(recurrence):
        weights.append(block.attention_weights(x))
        x = block(x)
    return compose_loops(weights, positions)


@contextmanager
def record_attention_inputs(model: nn.Module) -> Iterator[list[tuple[nn.Module, Tensor, int | None]]]:
    """Within the block, every call of a criss-cross attention block inside ``model`` appends
    ``(block, input, frames)`` to the yielded list, in call order (one entry per loop);
    ``frames`` is the ``frames=T`` a clip model (`ccnet.models.CCNet3D`) passes, else None."""
    calls: list[tuple[nn.Module, Tensor, int | None]] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict, _output: Tensor) -> None:
        calls.append((module, args[0].detach(), kwargs.get("frames")))

    handles = [module.register_forward_hook(hook, with_kwargs=True)
               for module in model.modules() if isinstance(module, CRISS_CROSS_BLOCKS)]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _loop_weights(block: nn.Module, inputs: Tensor, frames: int | None, clip_length: int | None) -> tuple[Tensor, ...]:
    """One loop's weights over the features' own axes. Clip models hold a clip's features frame
    by frame: with ``frames`` the block attended across the clip (3D weights); without, within each
    frame, whose 2D weights become 3D weights with nothing on the temporal line."""
    if frames is not None:
        return block.attention_weights(inputs, frames=frames)
    weights = block.attention_weights(inputs)
    if clip_length is None:
        return weights
    clips = inputs.shape[0] // clip_length
    per_frame = tuple(w.unflatten(0, (clips, clip_length)) for w in weights)  # (clips, T, h, w, L)
    temporal = per_frame[0].new_zeros(*per_frame[0].shape[:-1], clip_length)
    return (temporal, *per_frame)


def feature_index(coords: Tensor, input_length: int, feature_length: int, align_corners: bool) -> Tensor:
    """The feature cell each input coordinate falls on along one axis: the nearest cell under the
    sampling the model upsamples its logits with (``align_corners`` as in ``F.interpolate``)."""
    coords = coords.to(torch.float64)
    if align_corners:
        scale = (feature_length - 1) / (input_length - 1) if input_length > 1 else 0.0
        position = coords * scale
    else:
        position = (coords + 0.5) * (feature_length / input_length) - 0.5
    return position.round().clamp_(0, feature_length - 1).long()


@dataclass
class AttentionRecord:
    """What one forward pass of a model left: the attention weights of every loop, in loop order
    (see `ccnet.ops.criss_cross_attention_weights`; batch of one), the output logits, and
    the sizes to map input pixels onto feature cells. `maps` turns it into the maps of any
    pixels without another forward pass."""

    input_size: tuple[int, ...]
    feature_size: tuple[int, ...]
    weights: list[tuple[Tensor, ...]]
    logits: Tensor
    align_corners: bool

    @property
    def recurrence(self) -> int:
        return len(self.weights)

    def positions(self, pixels: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
        """The feature cell of each ``pixel`` (input coordinates): the nearest under the model's
        upsampling (`feature_index`)."""
        out = []
        for pixel in pixels:
            pixel = tuple(int(c) for c in pixel)
            size = self.input_size
            if len(pixel) != len(size) or not all(0 <= c < n for c, n in zip(pixel, size, strict=True)):
                raise InputError(f"pixel {pixel} is outside the {'x'.join(map(str, size))} input")
            out.append(tuple(int(feature_index(torch.tensor(c), n_in, n_f, self.align_corners))
                             for c, n_in, n_f in zip(pixel, size, self.feature_size, strict=True)))
        return out

    def maps(self, pixels: Sequence[Sequence[int]]) -> AttentionMaps:
        """The `AttentionMaps` of ``pixels`` (input coordinates)."""
        positions = self.positions(pixels)
        loops, crosses = compose_loops(self.weights, positions)
        pixels = [tuple(int(c) for c in pixel) for pixel in pixels]
        return AttentionMaps(pixels, positions, self.feature_size, loops[0], crosses[0], self.logits)


@torch.no_grad()
def record_attention(model: nn.Module, image: Tensor, *, align_corners: bool | None = None) -> AttentionRecord:
    """One forward pass of ``image`` through ``model``, keeping every criss-cross attention loop's
    weights (computed from the loop's input by the block's own query/key convs).

    Works for any model whose criss-cross attention blocks (`ccnet.nn.CrissCrossAttention`
    or `ccnet.nn.CrissCrossAttention3d`, shared or not) run as one chain of loops on one
    feature map, and whose input is ``(B, C, *spatial)`` with the same spatial axes as those
    features: `ccnet.CCNet` (``image`` ``(3, H, W)``, pixels ``(y, x)``), or
    `ccnet.models.CCNet3D` (or another video model whose head runs
    ``CrissCrossAttention3d`` on ``(B, C, T, h, w)`` features) on a ``(3, T, H, W)`` clip with
    ``(t, y, x)`` pixels: maps ``(T, h, w)``, frame ``t``'s part is ``loops[p, r, t]``, a frame's
    share ``loops[p, r, t].sum()``; a CCNet3D that attends per frame (``temporal=False``) keeps
    every map within its pixel's frame. The model returns
    logits, or a dict with them under ``"out"``.

    Args:
        model: run in eval mode for the call (its mode is restored afterwards).
        image: the model's input, normalised as for training; a batch of one or no batch axis.
        align_corners: how the model upsamples its logits (default: its ``align_corners``
            attribute, else False); decides which feature cell a pixel falls on.
    """
    blocks = {type(m) for m in model.modules() if isinstance(m, CRISS_CROSS_BLOCKS)}
    if not blocks:
        raise InputError(f"{type(model).__name__} has no criss-cross attention block")
    video = isinstance(model, CCNet3D)
    spatial_dims = 3 if video or CrissCrossAttention3d in blocks else 2
    x = image.unsqueeze(0) if image.dim() == spatial_dims + 1 else image
    if x.dim() != spatial_dims + 2 or x.shape[0] != 1:
        layout = "(C, H, W) or (1, C, H, W)" if spatial_dims == 2 else "(C, T, H, W) or (1, C, T, H, W)"
        raise ValueError(f"attention maps take one input {layout}, got shape {tuple(image.shape)}")
    if align_corners is None:
        align_corners = bool(getattr(model, "align_corners", False))

    was_training = model.training
    model.eval()
    try:
        with record_attention_inputs(model) as calls:
            output = model(x)
    finally:
        model.train(was_training)
    if not calls:
        raise InputError(f"{type(model).__name__} ran no criss-cross attention (recurrence 0?): no maps to show")
    clip_length = x.shape[2] if video else None
    weights = [_loop_weights(block, inputs, frames, clip_length) for block, inputs, frames in calls]
    feature_size = tuple(weights[0][0].shape[1:-1])
    if any(tuple(w[0].shape[1:-1]) != feature_size for w in weights):
        raise ValueError("the attention loops ran on feature maps of different sizes; they are not one chain")
    logits = output["out"] if isinstance(output, dict) else output
    return AttentionRecord(tuple(x.shape[2:]), feature_size, weights, logits, align_corners)


def attention_maps(
    model: nn.Module,
    image: Tensor,
    pixels: Sequence[Sequence[int]],
    *,
    align_corners: bool | None = None,
) -> AttentionMaps:
    """Attention maps of ``pixels`` (input coordinates: ``(y, x)``, or ``(t, y, x)`` for video)
    after each loop of ``model``'s criss-cross attention, from one forward pass of ``image``.

    Each pixel falls on the feature cell nearest to it under the model's upsampling. See
    `record_attention` for the models and inputs this takes, and the module docstring for
    what the maps are.
    """
    return record_attention(model, image, align_corners=align_corners).maps(pixels)
