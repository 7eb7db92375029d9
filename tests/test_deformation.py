"""The Deformable-3DGS deformation MLP has the published shapes and gradient behaviour."""

from __future__ import annotations

import math

import torch

from fourd_ns.deformation.encodings import FrequencyEncoding
from fourd_ns.deformation.mlp_field import DeformationMLP


def test_frequency_encoding_matches_the_nerf_embedder() -> None:
    encoding = FrequencyEncoding(3, 10)
    x = torch.tensor([[0.1, -0.2, 0.3]])
    out = encoding(x)
    assert encoding.out_dim == 63 and out.shape == (1, 63)
    assert torch.equal(out[0, :3], x[0])
    # second block is sin(2^0 x), third cos(2^0 x), then 2^1, ...
    assert torch.allclose(out[0, 3:6], torch.sin(x[0]))
    assert torch.allclose(out[0, 6:9], torch.cos(x[0]))
    assert torch.allclose(out[0, 9:12], torch.sin(2 * x[0]))
    assert FrequencyEncoding(1, 10).out_dim == 21 and FrequencyEncoding(1, 6).out_dim == 13


def test_mlp_layer_shapes_follow_deformable_3dgs() -> None:
    mlp = DeformationMLP()
    shapes = [tuple(layer.weight.shape) for layer in mlp.layers]
    # real-scene variant: input 63 + 21 = 84; the encoded input is concatenated again after layer 4
    assert shapes == [(256, 84)] + [(256, 256)] * 4 + [(256, 340)] + [(256, 256)] * 2
    assert mlp.head_means.out_features == 3 and mlp.head_quats.out_features == 4 and mlp.head_scales.out_features == 3
    blender = DeformationMLP(time_frequencies=6, time_net_width=256)
    assert blender.layers[0].in_features == 63 + 30


def test_deformation_does_not_backpropagate_into_canonical_positions() -> None:
    mlp = DeformationMLP(depth=3, width=16, skips=(1,))
    means = torch.randn(5, 3, requires_grad=True)
    times = torch.rand(5, 1)
    offsets = mlp(means, times)
    (offsets.d_means.sum() + offsets.d_quats.sum() + offsets.d_scales.sum()).backward()
    assert means.grad is None
    assert all(p.grad is not None for p in mlp.parameters())


def test_offsets_depend_on_time() -> None:
    torch.manual_seed(0)
    mlp = DeformationMLP(depth=3, width=16, skips=(1,))
    means = torch.randn(4, 3)
    a = mlp(means, torch.zeros(4, 1)).d_means
    b = mlp(means, torch.ones(4, 1)).d_means
    assert not torch.allclose(a, b)
    assert math.isfinite(float(a.abs().max()))
