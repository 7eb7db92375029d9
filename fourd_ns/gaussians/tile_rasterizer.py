"""Differentiable tile-based alpha compositing of 2D Gaussians on the CPU (pure torch).

Algorithm (the 3DGS / gsplat scheme, vectorised for torch instead of one CUDA thread per pixel):

1. **Block intersection.** As in gsplat, a projected Gaussian may only reach the ``tile_size`` tiles of its square
   ``means2d +- radius``. We composite in smaller ``block_size`` blocks (default 8, dividing the tile): a Gaussian is
   listed for the blocks of those tiles that meet the bounding box of the ellipse on which its alpha drops to 1/255
   (pixels outside it are skipped by the compositing rule anyway, so the crop changes nothing but the work). The
   (block, Gaussian) pairs are generated with ``repeat_interleave`` and sorted by one int64 key
   ``(camera * blocks + block) << 32 | float32 bits of depth``, as gsplat orders its tile intersections.
2. **Chunked padded layout.** Non-empty blocks are sorted by their number of intersections and grouped into chunks
   whose padded size ``blocks_in_chunk * block_size**2 * max_intersections_in_chunk`` stays under
   ``chunk_elements``. A chunk is processed as dense ``[blocks, block_size, block_size, M]`` tensors; padding points at
   a zero-opacity dummy Gaussian. Peak memory is therefore a few times ``chunk_elements`` floats (default 2^20, which
   also keeps the working set in cache) plus O(intersections) bookkeeping, independent of ``pixels * Gaussians``;
   the Python loop runs over chunks only.
3. **Compositing** follows gsplat's kernel: at pixel centres ``(x + 0.5, y + 0.5)``,
   ``sigma = 1/2 (a dx^2 + c dy^2) + b dx dy``, ``alpha = min(0.999, opacity * exp(-sigma))``, a Gaussian is skipped
   where ``sigma < 0`` or ``alpha < 1/255``, and compositing stops before the Gaussian that would bring the
   transmittance to ``<= 1e-4`` (that Gaussian is not composited). Transmittance is an inclusive ``cumprod``.
4. **Backward** (:class:`_TileComposite`) recomputes each chunk instead of storing it and applies the classic
   3DGS gradient: ``dL/dalpha_i = T_i (c_i . g) - (sum_{j>i} w_j (c_j . g) + T_final dL/dT_final) / (1 - alpha_i)``
   with the suffix sum from a ``cumsum``. Gradients to means2d, conics and opacity only need six pixel moments of
   ``dL/dsigma`` per Gaussian, computed by one matmul against ``[1, x, y, x^2, xy, y^2]`` in block-centred coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4
# Masks are applied with F.threshold (keeps x > t), which is many times faster on CPU than boolean masking; these
# are the float32 numbers just below gsplat's inclusive limits, so "x > t" means "x >= limit" exactly.
_BELOW_ALPHA_MIN = torch.nextafter(torch.tensor(ALPHA_MIN, dtype=torch.float32), torch.tensor(0.0)).item()
_BELOW_ALPHA_MAX = torch.nextafter(torch.tensor(ALPHA_MAX, dtype=torch.float32), torch.tensor(0.0)).item()
_BELOW_ZERO = -torch.finfo(torch.float32).tiny


@dataclass
class TileIntersections:
    """Sorted (block, Gaussian) pairs of all cameras and their grouping into chunks of blocks."""

    gaussian_ids: Int[Tensor, "I+1"]
    """Flat Gaussian index ``camera * N + n`` of every intersection, sorted by (camera, block, depth); the extra last
    entry is the dummy Gaussian ``C * N`` used as padding."""
    block_ids: Int[Tensor, "T"]
    """Global ids ``camera * blocks_per_image + block`` of the non-empty blocks, ordered by decreasing count."""
    block_starts: Int[Tensor, "T"]
    """Offset of each of these blocks' first intersection in ``gaussian_ids``."""
    block_counts: Int[Tensor, "T"]
    chunks: List[Tuple[int, int, int]]
    """``(first, last + 1, max count)`` ranges into ``block_ids``."""
    n_cameras: int
    blocks_x: int
    blocks_y: int
    block_size: int

    @property
    def n_intersections(self) -> int:
        return self.gaussian_ids.shape[0] - 1

    @property
    def n_blocks(self) -> int:
        """Blocks of all cameras together, empty ones included."""
        return self.n_cameras * self.blocks_x * self.blocks_y


@torch.no_grad()
def intersect_tiles(
    means2d: Float[Tensor, "C N 2"],
    radii: Int[Tensor, "C N"],
    depths: Float[Tensor, "C N"],
    conics: Float[Tensor, "C N 3"],
    opacities: Float[Tensor, "C N"],
    width: int,
    height: int,
    tile_size: int = 16,
    block_size: int = 8,
    chunk_elements: int = 1 << 20,
) -> TileIntersections:
    """Build the depth-sorted intersection lists of processing blocks (no gradients flow through this bookkeeping).

    ``tile_size`` is gsplat's tile and defines which pixels a Gaussian may reach (its ``means2d +- radius`` tiles);
    ``block_size`` (a divisor of ``tile_size``) is the unit we composite in: smaller blocks waste less work on
    pixels a Gaussian does not reach without changing the result.
    """
    if tile_size % block_size:
        raise ValueError(f"block_size {block_size} must divide tile_size {tile_size}")
    n_cameras, n = radii.shape
    blocks_x, blocks_y = -(-width // block_size), -(-height // block_size)
    means2d, conics, opacities = means2d.reshape(-1, 2), conics.reshape(-1, 3), opacities.reshape(-1)
    radius = radii.reshape(-1).to(means2d.dtype)

    # Ellipse {sigma <= ln(255 opacity)} bounds every pixel that can pass alpha >= 1/255; its half extents are
    # sqrt(2 t Sigma_xx), sqrt(2 t Sigma_yy) with Sigma the inverse conic. A small margin absorbs rounding.
    a, b, c = conics.unbind(-1)
    det = (a * c - b * b).clamp(min=1e-12)
    level = 2.0 * torch.log((opacities / ALPHA_MIN).clamp(min=1.0))
    half_x = torch.sqrt(level * c / det) * 1.001 + 1e-3
    half_y = torch.sqrt(level * a / det) * 1.001 + 1e-3

    def block_range(centre: Tensor, half: Tensor, n_blocks: int) -> Tuple[Tensor, Tensor]:
        # gsplat's tiles of the square centre +- radius, as a pixel interval, cropped to the ellipse's extent.
        lo = torch.maximum(torch.floor((centre - radius) / tile_size) * tile_size, centre - half)
        hi = torch.minimum(torch.ceil((centre + radius) / tile_size) * tile_size, centre + half)
        return torch.floor(lo / block_size).clamp(0, n_blocks), torch.ceil(hi / block_size).clamp(0, n_blocks)

    x0, x1 = block_range(means2d[:, 0], half_x, blocks_x)
    y0, y1 = block_range(means2d[:, 1], half_y, blocks_y)
    visible = (radius > 0) & (opacities >= ALPHA_MIN)
    span_x = ((x1 - x0) * visible).long()
    span_y = ((y1 - y0) * visible).long().clamp(min=0)
    counts = span_x.clamp(min=0) * span_y

    ids = torch.repeat_interleave(torch.arange(n_cameras * n, device=radii.device), counts)
    first = torch.cumsum(counts, 0) - counts
    k = torch.arange(ids.shape[0], device=radii.device) - first[ids]
    w = span_x[ids]
    tx = x0.long()[ids] + k % w
    ty = y0.long()[ids] + k // w
    block = (ids // n) * (blocks_x * blocks_y) + ty * blocks_x + tx
    # Depths are > near_plane > 0, so their float32 bit patterns sort like the floats.
    depth_bits = depths.reshape(-1).float().view(torch.int32).long()[ids]
    order = torch.sort((block << 32) | depth_bits).indices
    sorted_ids = torch.cat([ids[order], ids.new_full((1,), n_cameras * n)])

    per_block = torch.bincount(block, minlength=n_cameras * blocks_x * blocks_y)
    starts = torch.cumsum(per_block, 0) - per_block
    nonempty = torch.nonzero(per_block).squeeze(1)
    block_counts, rank = torch.sort(per_block[nonempty], descending=True)
    block_ids = nonempty[rank]

    chunks = []
    counts_list = block_counts.tolist()
    first_block, pixels = 0, block_size * block_size
    while first_block < len(counts_list):
        m = counts_list[first_block]
        last = min(len(counts_list), first_block + max(1, chunk_elements // (pixels * m)))
        chunks.append((first_block, last, m))
        first_block = last
    return TileIntersections(
        gaussian_ids=sorted_ids,
        block_ids=block_ids,
        block_starts=starts[block_ids],
        block_counts=block_counts,
        chunks=chunks,
        n_cameras=n_cameras,
        blocks_x=blocks_x,
        blocks_y=blocks_y,
        block_size=block_size,
    )


@dataclass
class _Chunk:
    """Gathered inputs of one chunk: ``Tc`` blocks, ``M`` padded intersections each."""

    blocks: Int[Tensor, "Tc"]
    gaussians: Int[Tensor, "Tc M"]
    params: Float[Tensor, "Tc M 6"]
    """mean x, mean y (block-centred), a/2, b, c/2, opacity."""
    colors: Float[Tensor, "Tc M D"]
    pix: Float[Tensor, "ts"]
    """Block-centred pixel-centre coordinates, the same along x and y."""


def _block_pixel_centres(block_size: int, like: Tensor) -> Float[Tensor, "bs"]:
    """Pixel-centre coordinates relative to the block centre; small magnitudes keep the backward's moments exact."""
    return torch.arange(block_size, device=like.device, dtype=like.dtype) + (0.5 - block_size / 2)


def _gather_chunk(isects: TileIntersections, table: Tensor, colors: Tensor, chunk: Tuple[int, int, int]) -> _Chunk:
    first, last, m = chunk
    ts = isects.block_size
    slots = torch.arange(m, device=table.device)
    index = isects.block_starts[first:last, None] + slots
    index = torch.where(slots < isects.block_counts[first:last, None], index, isects.n_intersections)
    gaussians = isects.gaussian_ids.index_select(0, index.view(-1)).view(index.shape)
    blocks = isects.block_ids[first:last]
    local = blocks % (isects.blocks_x * isects.blocks_y)
    centre = torch.stack([local % isects.blocks_x, local // isects.blocks_x], -1).to(table.dtype) * ts + ts / 2
    flat = gaussians.view(-1)
    params = table.index_select(0, flat).view(*gaussians.shape, 6)
    params[..., :2] -= centre[:, None, :]
    chunk_colors = colors.index_select(0, flat).view(*gaussians.shape, colors.shape[-1])
    return _Chunk(blocks, gaussians, params, chunk_colors, _block_pixel_centres(ts, table))


@dataclass
class _ChunkForward:
    """Per (block, pixel, intersection) quantities of one chunk, all ``[Tc, P, M]`` unless noted."""

    dx: Float[Tensor, "Tc 1 ts M"]
    dy: Float[Tensor, "Tc ts 1 M"]
    alpha: Tensor
    """Composited alpha; 0 where skipped, past the transmittance stop, or padding."""
    one_minus_alpha: Tensor
    """``1 - alpha`` before the transmittance stop was applied (equal to ``1 - alpha`` wherever it is used)."""
    transmittance: Tensor
    """Transmittance in front of each Gaussian."""
    final_transmittance: Float[Tensor, "Tc P"]


def _composite_chunk(chunk: _Chunk) -> _ChunkForward:
    """Front-to-back compositing of one chunk. Written as few, cheap full-size passes as possible: these
    ``[Tc, P, M]`` element-wise ops are the whole cost of the rasterizer."""
    mx, my, half_a, b, half_c, opac = (p[:, None, None, :] for p in chunk.params.unbind(-1))
    pix = chunk.pix[None, :, None]
    dx = mx - pix[:, None]  # [Tc, 1, ts, M]
    dy = my - pix[:, :, None]  # [Tc, ts, 1, M]
    # sigma = dx ((a/2) dx + b dy) + (c/2) dy^2: two full-size passes.
    sigma = torch.addcmul(half_c * dy * dy, dx, half_a * dx + b * dy)
    tc, ts, m = sigma.shape[0], sigma.shape[1], sigma.shape[-1]
    sigma = sigma.view(tc, ts * ts, m)
    # gsplat skips sigma < 0 (rounding at a Gaussian's centre): sigma = inf gives alpha = 0.
    F.threshold_(sigma, _BELOW_ZERO, float("inf"))
    alpha = torch.exp(sigma.neg_()).mul_(opac.view(tc, 1, m))
    F.threshold_(alpha, _BELOW_ALPHA_MIN, 0.0).clamp_(max=ALPHA_MAX)  # skip alpha < 1/255
    one_minus = torch.rsub(alpha, 1.0)
    after = torch.cumprod(one_minus, dim=-1)
    # Compositing stops before the Gaussian that would bring T to <= 1e-4. `after` never increases, so stopped
    # slots are a suffix; threshold(...).sign_() is their 0/1 indicator, and the final transmittance is the
    # smallest inclusive product above the limit (skipped slots multiply by 1).
    alpha.mul_(F.threshold(after, TRANSMITTANCE_MIN, 0.0).sign_())
    final = F.threshold(after, TRANSMITTANCE_MIN, 1.0).amin(-1)
    before = F.pad(after[..., :-1], (1, 0), value=1.0)
    return _ChunkForward(dx, dy, alpha, one_minus, before, final)


def _gaussian_table(
    means2d: Float[Tensor, "C N 2"], conics: Float[Tensor, "C N 3"], opacities: Float[Tensor, "C N"]
) -> Float[Tensor, "C*N+1 6"]:
    """Per-Gaussian (mean x, mean y, a/2, b, c/2, opacity) rows plus an all-zero dummy row used as padding."""
    a, b, c = conics.reshape(-1, 3).unbind(-1)
    table = torch.stack([*means2d.reshape(-1, 2).unbind(-1), 0.5 * a, b, 0.5 * c, opacities.reshape(-1)], -1)
    return torch.cat([table, table.new_zeros(1, 6)])


def _pad_rows(values: Float[Tensor, "C N D"]) -> Float[Tensor, "C*N+1 D"]:
    flat = values.reshape(-1, values.shape[-1])
    return torch.cat([flat, flat.new_zeros(1, flat.shape[-1])])


def _pixel_moment_basis(pix: Float[Tensor, "ts"]) -> Float[Tensor, "6 P"]:
    """``[1, x, y, x^2, xy, y^2]`` at a block's pixel centres, row-major (y outer, x inner)."""
    ts = pix.shape[0]
    x = pix.repeat(ts)
    y = pix.repeat_interleave(ts)
    return torch.stack([torch.ones_like(x), x, y, x * x, x * y, y * y])


class _TileComposite(torch.autograd.Function):
    """Front-to-back compositing in block layout with an analytic, chunk-recomputing backward."""

    @staticmethod
    def forward(
        ctx,
        means2d: Float[Tensor, "C N 2"],
        conics: Float[Tensor, "C N 3"],
        colors: Float[Tensor, "C N D"],
        opacities: Float[Tensor, "C N"],
        isects: TileIntersections,
        absgrad: bool,
    ) -> Tuple[Float[Tensor, "blocks P D"], Float[Tensor, "blocks P"]]:
        table, color_rows = _gaussian_table(means2d, conics, opacities), _pad_rows(colors)
        pixels = isects.block_size**2
        accum = colors.new_zeros(isects.n_blocks, pixels, colors.shape[-1])
        final = colors.new_ones(isects.n_blocks, pixels)
        for chunk_range in isects.chunks:
            chunk = _gather_chunk(isects, table, color_rows, chunk_range)
            fwd = _composite_chunk(chunk)
            # (colors^T weights^T)^T: BLAS is several times faster with the long M axis as the reduction here.
            weights = fwd.alpha.mul_(fwd.transmittance)
            accum[chunk.blocks] = torch.bmm(chunk.colors.transpose(1, 2), weights.transpose(1, 2)).transpose(1, 2)
            final[chunk.blocks] = fwd.final_transmittance
        ctx.save_for_backward(means2d, conics, colors, opacities)
        ctx.isects, ctx.absgrad = isects, absgrad
        return accum, final

    @staticmethod
    def backward(ctx, grad_accum: Float[Tensor, "blocks P D"], grad_final: Float[Tensor, "blocks P"]):
        means2d, conics, colors, opacities = ctx.saved_tensors
        isects: TileIntersections = ctx.isects
        table, color_rows = _gaussian_table(means2d, conics, opacities), _pad_rows(colors)
        grad_table = torch.zeros_like(table)
        grad_colors = torch.zeros_like(color_rows)
        grad_abs = table.new_zeros(table.shape[0], 2) if ctx.absgrad else None
        basis = _pixel_moment_basis(_block_pixel_centres(isects.block_size, table))
        for chunk_range in isects.chunks:
            chunk = _gather_chunk(isects, table, color_rows, chunk_range)
            fwd = _composite_chunk(chunk)
            ids = chunk.gaussians.reshape(-1)
            g = grad_accum[chunk.blocks]  # [Tc, P, D]
            weights = fwd.alpha * fwd.transmittance
            grad_colors.index_add_(0, ids, torch.bmm(g.transpose(1, 2), weights).transpose(1, 2).flatten(0, 1))

            color_dot_g = torch.bmm(g, chunk.colors.transpose(1, 2))  # [Tc, P, M]
            behind = torch.cumsum(weights.mul_(color_dot_g), dim=-1)
            # sum_{j>i} w_j (c_j . g) + T_final dL/dT_final; both terms enter dL/dalpha_i divided by 1 - alpha_i.
            tail = behind[..., -1:] + (grad_final[chunk.blocks] * fwd.final_transmittance)[..., None]
            behind = torch.sub(tail, behind).div_(fwd.one_minus_alpha)
            grad_alpha = fwd.transmittance.mul_(color_dot_g).sub_(behind)
            alpha = fwd.alpha
            if (chunk.params[..., 5] >= ALPHA_MAX).any():
                # alpha = min(0.999, o exp(-sigma)): clamped alphas pass no gradient to sigma or opacity.
                alpha = alpha - F.threshold(alpha, _BELOW_ALPHA_MAX, 0.0)
            neg_grad_sigma = grad_alpha.mul_(alpha)  # dL/dsigma = -alpha dL/dalpha

            g0, gx, gy, gxx, gxy, gyy = torch.matmul(basis, neg_grad_sigma).neg_().unbind(1)  # each [Tc, M]
            ux, uy, half_a, b, half_c, opac = chunk.params.unbind(-1)
            s_dx = ux * g0 - gx
            s_dy = uy * g0 - gy
            s_dxx = ux * ux * g0 - 2.0 * ux * gx + gxx
            s_dxy = ux * uy * g0 - ux * gy - uy * gx + gxy
            s_dyy = uy * uy * g0 - 2.0 * uy * gy + gyy
            grad_rows = torch.stack(
                [
                    2.0 * half_a * s_dx + b * s_dy,
                    b * s_dx + 2.0 * half_c * s_dy,
                    0.5 * s_dxx,
                    s_dxy,
                    0.5 * s_dyy,
                    -g0 / opac.clamp(min=1e-12),  # sum over pixels of dL/dalpha * exp(-sigma)
                ],
                -1,
            )
            grad_table.index_add_(0, ids, grad_rows.flatten(0, 1))
            if grad_abs is not None:
                tc, m = ux.shape
                gs = neg_grad_sigma.view(tc, chunk.pix.shape[0], chunk.pix.shape[0], m)
                a4, b4, c4 = (2.0 * half_a)[:, None, None], b[:, None, None], (2.0 * half_c)[:, None, None]
                abs_x = (gs * (a4 * fwd.dx + b4 * fwd.dy)).abs_().sum((1, 2))
                abs_y = (gs * (b4 * fwd.dx + c4 * fwd.dy)).abs_().sum((1, 2))
                grad_abs.index_add_(0, ids, torch.stack([abs_x, abs_y], -1).flatten(0, 1))

        n = means2d.shape[0] * means2d.shape[1]
        if grad_abs is not None:
            means2d.absgrad = grad_abs[:n].reshape(means2d.shape)
        return (
            grad_table[:n, :2].reshape(means2d.shape),
            grad_table[:n, 2:5].reshape(conics.shape),
            grad_colors[:n].reshape(colors.shape),
            grad_table[:n, 5].reshape(opacities.shape),
            None,
            None,
        )


def _blocks_to_image(x: Float[Tensor, "blocks P D"], isects: TileIntersections, width: int, height: int) -> Tensor:
    """Block layout ``[C * blocks_y * blocks_x, bs * bs, D]`` to images ``[C, H, W, D]``."""
    ts = isects.block_size
    x = x.view(isects.n_cameras, isects.blocks_y, isects.blocks_x, ts, ts, x.shape[-1]).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(isects.n_cameras, isects.blocks_y * ts, isects.blocks_x * ts, -1)
    return x[:, :height, :width]


def rasterize_to_pixels(
    means2d: Float[Tensor, "C N 2"],
    conics: Float[Tensor, "C N 3"],
    colors: Float[Tensor, "C N D"],
    opacities: Float[Tensor, "C N"],
    radii: Int[Tensor, "C N"],
    depths: Float[Tensor, "C N"],
    width: int,
    height: int,
    tile_size: int = 16,
    backgrounds: Optional[Float[Tensor, "C D"]] = None,
    absgrad: bool = False,
    block_size: int = 8,
    chunk_elements: int = 1 << 20,
) -> Tuple[Float[Tensor, "C H W D"], Float[Tensor, "C H W 1"], TileIntersections]:
    """Composite projected Gaussians into images, as gsplat's ``rasterize_to_pixels`` (``packed=False``).

    Gaussians with ``radii == 0`` are ignored. ``depths`` only orders them. With ``absgrad`` the backward pass also
    stores the per-pixel absolute means2d gradients summed per Gaussian in ``means2d.absgrad``, as gsplat does.
    ``tile_size`` is gsplat's (it decides which pixels a Gaussian may reach); ``block_size`` is the compositing
    unit (see :func:`intersect_tiles`), reduced to ``tile_size`` when it does not divide it. ``chunk_elements``
    bounds the padded ``blocks * pixels * intersections`` processed at once (memory vs. per-chunk overhead).
    """
    isects = intersect_tiles(
        means2d.detach(), radii, depths.detach(), conics.detach(), opacities.detach(), width, height, tile_size,
        block_size if tile_size % block_size == 0 else tile_size, chunk_elements,
    )  # fmt: skip
    accum, final = _TileComposite.apply(means2d, conics, colors, opacities, isects, absgrad)
    render = _blocks_to_image(accum, isects, width, height)
    transmittance = _blocks_to_image(final[..., None], isects, width, height)
    if backgrounds is not None:
        render = render + transmittance * backgrounds[:, None, None, :]
    return render, 1.0 - transmittance, isects
