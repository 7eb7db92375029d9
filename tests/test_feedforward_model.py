"""Flow4R's network: RoPE2D, the CroCo blocks and backbone, the linear/DPT heads, post-processing, symmetry, the
factored-flow head, and parameter names/shapes against the real CroCo v2 / DUSt3R key listing."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fourd_ns.feedforward.croco_backbone import CroCoBackbone, CroCoBackboneConfig, backbone_preset
from fourd_ns.feedforward.croco_blocks import (
    Attention,
    CrossAttention,
    DecoderBlock,
    PatchEmbed,
    attention_reference,
)
from fourd_ns.feedforward.dpt_head import DPTHead, FeatureFusionBlock, default_dpt_hooks
from fourd_ns.feedforward.factored_flow_head import FactoredFlowHead, pixel_centres
from fourd_ns.feedforward.flow4r import (
    Flow4R,
    Flow4RConfig,
    confidence_from_logits,
    points_from_exp_depth,
    pose_weight_from_logits,
)
from fourd_ns.feedforward.linear_head import LinearHead
from fourd_ns.feedforward.rope2d import apply_rope2d

KEYS_FILE = Path(__file__).parent / "fixtures" / "croco_dust3r_state_dict_keys.txt"
"""Keys and shapes of the official CroCo v2 / DUSt3R models (instantiated on the meta device; see its header)."""


def _images(batch: int = 2, height: int = 32, width: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(batch, 3, height, width, generator=generator) * 2 - 1 for _ in range(2))


# --- RoPE2D ----------------------------------------------------------------------------------------------------


def test_rope2d_is_identity_at_position_zero():
    tokens = torch.randn(2, 3, 5, 16)
    positions = torch.zeros(2, 5, 2, dtype=torch.long)
    torch.testing.assert_close(apply_rope2d(tokens, positions), tokens)


def test_rope2d_closed_form_rotations():
    """Head dim 8: y-half channels (0,2) rotate by y·1 and (1,3) by y·100^-0.5; x-half (4,6) by x·1, (5,7) by x/10."""
    y, x = 2, 3
    positions = torch.tensor([[[y, x]]])
    eye = torch.eye(8)[None, :, None, :]  # [1, 8 heads (one basis vector each), 1 token, 8 channels]
    out = apply_rope2d(eye, positions.expand(1, 1, 2))[0, :, 0]  # [8 inputs, 8 channels]
    expected = torch.zeros(8, 8)
    for first, second, angle in [(0, 2, y * 1.0), (1, 3, y * 0.1), (4, 6, x * 1.0), (5, 7, x * 0.1)]:
        c, s = math.cos(angle), math.sin(angle)
        expected[first, first], expected[first, second] = c, s  # e_first → cos·e_first + sin·e_second
        expected[second, first], expected[second, second] = -s, c
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_rope2d_scores_depend_only_on_relative_position():
    generator = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 1, 4, 1, 32, generator=generator)
    pairs = [((3, 5), (1, 2)), ((10, 9), (8, 6)), ((-4, 0), (-6, -3))]  # same difference (2, 3) each time
    scores = []
    for pq, pk in pairs:
        rq = apply_rope2d(q, torch.tensor([[pq]]))
        rk = apply_rope2d(k, torch.tensor([[pk]]))
        scores.append((rq * rk).sum(-1))
    for other in scores[1:]:
        torch.testing.assert_close(other, scores[0], atol=1e-4, rtol=1e-4)
    moved = (apply_rope2d(q, torch.tensor([[[3, 5]]])) * apply_rope2d(k, torch.tensor([[[1, 3]]]))).sum(-1)
    assert (moved - scores[0]).abs().max() > 1e-2  # a different offset changes the scores


def test_rope2d_rejects_head_dims_not_multiple_of_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        apply_rope2d(torch.randn(1, 1, 2, 6), torch.zeros(1, 2, 2, dtype=torch.long))


# --- blocks ----------------------------------------------------------------------------------------------------


def test_attention_reference_matches_fused_kernel():
    q, k, v = torch.randn(3, 2, 4, 7, 8).unbind(0)
    torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v), attention_reference(q, k, v))


def test_self_attention_matches_explicit_reference():
    torch.manual_seed(0)
    dim, heads, tokens = 16, 2, 6
    attention = Attention(dim, heads)
    x = torch.randn(2, tokens, dim)
    positions = torch.randint(0, 5, (2, tokens, 2))
    weight = attention.qkv.weight.reshape(3, heads, dim // heads, dim)  # the checkpoints' (3, heads, d) layout
    bias = attention.qkv.bias.reshape(3, heads, dim // heads)
    q, k, v = (torch.einsum("bnc,hdc->bhnd", x, weight[i]) + bias[i][None, :, None] for i in range(3))
    out = attention_reference(apply_rope2d(q, positions), apply_rope2d(k, positions), v)
    expected = attention.proj(out.transpose(1, 2).reshape(2, tokens, dim))
    torch.testing.assert_close(attention(x, positions), expected, atol=1e-5, rtol=1e-5)


def test_cross_attention_matches_explicit_reference():
    torch.manual_seed(0)
    dim, heads = 16, 4
    attention = CrossAttention(dim, heads)
    query, memory = torch.randn(2, 5, dim), torch.randn(2, 7, dim)
    query_positions, key_positions = torch.randint(0, 9, (2, 5, 2)), torch.randint(0, 9, (2, 7, 2))

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, dim // heads).transpose(1, 2)

    q = apply_rope2d(split(attention.projq(query)), query_positions)
    k = apply_rope2d(split(attention.projk(memory)), key_positions)
    out = attention_reference(q, k, split(attention.projv(memory)))
    expected = attention.proj(out.transpose(1, 2).reshape(2, 5, dim))
    torch.testing.assert_close(attention(query, memory, memory, query_positions, key_positions), expected,
                               atol=1e-5, rtol=1e-5)


def test_decoder_block_follows_prenorm_residual_recipe():
    torch.manual_seed(0)
    block = DecoderBlock(16, 2)
    x, y = torch.randn(1, 4, 16), torch.randn(1, 3, 16)
    px, py = torch.randint(0, 4, (1, 4, 2)), torch.randint(0, 4, (1, 3, 2))
    expected = x + block.attn(block.norm1(x), px)
    memory = block.norm_y(y)
    expected = expected + block.cross_attn(block.norm2(expected), memory, memory, px, py)
    expected = expected + block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm3(expected))))
    torch.testing.assert_close(block(x, y, px, py), expected)


def test_patch_embed_tokens_and_row_major_positions():
    torch.manual_seed(0)
    embed = PatchEmbed(embed_dim=8, patch_size=16)
    images = torch.randn(1, 3, 32, 48)
    tokens, positions = embed(images)
    assert tokens.shape == (1, 6, 8)
    assert positions.tolist() == [[[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]]
    patch = images[0, :, 16:32, 32:48]  # row 1, column 2 → token 5
    expected = (embed.proj.weight * patch).sum(dim=(1, 2, 3)) + embed.proj.bias
    torch.testing.assert_close(tokens[0, 5], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"30×48.*multiple of the patch size 16"):
        embed(torch.randn(1, 3, 30, 48))


# --- backbone --------------------------------------------------------------------------------------------------


def test_backbone_config_validation_names_the_setting():
    with pytest.raises(ValueError, match="dec head dimension .* multiple of 4"):
        CroCoBackbone(CroCoBackboneConfig(32, 1, 2, 36, 1, 6))
    with pytest.raises(ValueError, match="enc_embed_dim=30 is not divisible by enc_num_heads=4"):
        CroCoBackboneConfig(30, 1, 4, 32, 1, 2).validate()
    with pytest.raises(ValueError, match="unknown backbone preset"):
        backbone_preset("vit-huge")


def test_shared_decoder_matches_a_per_stream_reference():
    """Each stream is decoded with the same blocks, cross-attending to the other stream's previous layer."""
    torch.manual_seed(0)
    backbone = CroCoBackbone(backbone_preset("tiny"))
    image1, image2 = _images(batch=1)
    pair = backbone(image1, image2)
    assert len(pair.tokens1) == len(pair.tokens2) == backbone.backbone_config.dec_depth + 1
    assert pair.grid_size == (2, 3)
    enc1, positions = backbone.encode(image1)
    enc2, _ = backbone.encode(image2)
    torch.testing.assert_close(pair.tokens1[0], enc1, atol=1e-5, rtol=1e-5)
    f1, f2 = backbone.decoder_embed(enc1), backbone.decoder_embed(enc2)
    for layer, block in enumerate(backbone.dec_blocks, start=1):
        f1, f2 = block(f1, f2, positions, positions), block(f2, f1, positions, positions)
        if layer < len(backbone.dec_blocks):
            torch.testing.assert_close(pair.tokens1[layer], f1, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(pair.tokens2[layer], f2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pair.tokens1[-1], backbone.dec_norm(f1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pair.tokens2[-1], backbone.dec_norm(f2), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        backbone(image1, image2[..., :32])


# --- heads and post-processing ---------------------------------------------------------------------------------


def test_linear_head_pixel_shuffle_layout():
    """Output channel c·p² + i·p + j of a token lands on pixel (i, j) of its patch, channel c."""
    head = LinearHead(dim=4, out_channels=2, patch_size=2)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(torch.arange(8.0))
    out = head([torch.randn(1, 6, 4)], grid_size=(2, 3))
    assert out.shape == (1, 2, 4, 6)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                assert torch.all(out[0, c, i::2, j::2] == c * 4 + i * 2 + j)


def test_dpt_head_handles_odd_token_grids():
    torch.manual_seed(0)
    head = DPTHead([8, 8, 8, 8], hooks=[0, 1, 2, 3], out_channels=3, layer_dims=(4, 4, 8, 8), feature_dim=8,
                   last_dim=4)
    tokens = [torch.randn(2, 15, 8) for _ in range(4)]  # a 3×5 token grid: the ½× level has 2×3 cells
    assert head(tokens, (3, 5)).shape == (2, 3, 48, 80)


def test_fusion_block_crops_bottom_right_after_upsampling():
    block = FeatureFusionBlock(2)
    x = torch.randn(1, 2, 2, 3)
    full = block(x)
    cropped = block(x, output_size=(3, 5))
    assert full.shape[-2:] == (4, 6) and cropped.shape[-2:] == (3, 5)
    torch.testing.assert_close(cropped, full[..., :3, :5])  # out_conv is 1×1, so cropping commutes with it


def test_post_processing_closed_forms():
    raw = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0], [0.0, -0.5, 0.0]])
    points = points_from_exp_depth(raw)
    torch.testing.assert_close(points[0], torch.zeros(3))  # no NaN at the origin
    torch.testing.assert_close(points[1], torch.tensor([0.6, 0.0, 0.8]) * math.expm1(5.0))
    torch.testing.assert_close(points[2], torch.tensor([0.0, -math.expm1(0.5), 0.0]))
    torch.testing.assert_close(confidence_from_logits(torch.tensor([0.0, -30.0, 2.0])),
                               torch.tensor([2.0, 1.0, 1.0 + math.exp(2.0)]))


def test_pose_weights_softmax_floor_and_mask():
    logits = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    plain = pose_weight_from_logits(logits)
    torch.testing.assert_close(plain.flatten(), torch.softmax(torch.tensor([0.0, 1.0, 2.0, 3.0]), 0))
    floored = pose_weight_from_logits(logits, floor=0.2)
    torch.testing.assert_close(floored, 0.8 * plain + 0.05)
    valid = torch.tensor([[[True, False], [True, True]]])
    masked = pose_weight_from_logits(logits, valid, floor=0.3)
    expected = 0.7 * torch.softmax(torch.tensor([0.0, 2.0, 3.0]), 0) + 0.1
    torch.testing.assert_close(masked.flatten(), torch.tensor([expected[0], 0.0, expected[1], expected[2]]))
    huge = pose_weight_from_logits(torch.tensor([[[1e4, -1e4], [1e4, 0.0]]]))
    torch.testing.assert_close(huge.flatten(), torch.tensor([0.5, 0.0, 0.5, 0.0]))
    with pytest.raises(ValueError, match="at least one valid pixel"):
        pose_weight_from_logits(logits, torch.zeros_like(valid))


# --- Flow4R ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["linear", "dpt"])
def test_flow4r_output_shapes_and_ranges(head):
    torch.manual_seed(0)
    model = Flow4R(Flow4RConfig.tiny(head=head))
    image1, image2 = _images()
    prediction = model(image1, image2)
    for view in (prediction.view1, prediction.view2):
        assert view.points.shape == view.points_other.shape == (2, 32, 48, 3)
        assert view.pose_weight.shape == view.confidence.shape == (2, 32, 48)
        torch.testing.assert_close(view.pose_weight.sum(dim=(1, 2)), torch.ones(2))
        assert bool((view.pose_weight > 0).all())  # the floor keeps every pixel in the pose solve
        assert bool((view.confidence > 1).all())
        assert bool(torch.isfinite(view.points).all() and torch.isfinite(view.points_other).all())
    assert prediction.correspondence1 is None and prediction.correspondence2 is None


def test_flow4r_pose_weight_masks():
    torch.manual_seed(0)
    model = Flow4R(Flow4RConfig.tiny(head="linear"))
    image1, image2 = _images(batch=1)
    valid = torch.ones(1, 32, 48, dtype=torch.bool)
    valid[:, :8] = False
    prediction = model(image1, image2, valid1=valid)
    assert bool((prediction.view1.pose_weight[:, :8] == 0).all())
    torch.testing.assert_close(prediction.view1.pose_weight.sum(), torch.tensor(1.0))
    assert bool((prediction.view2.pose_weight > 0).all())


def test_flow4r_is_symmetric_under_swapping_the_inputs():
    torch.manual_seed(0)
    model = Flow4R(Flow4RConfig.tiny(head="dpt", factored_flow=True))
    image1, image2 = _images()
    forward, backward = model(image1, image2), model(image2, image1)
    for swapped, original in [(backward.view1, forward.view2), (backward.view2, forward.view1)]:
        for name in ("points", "points_other", "pose_weight", "confidence"):
            torch.testing.assert_close(getattr(swapped, name), getattr(original, name), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(backward.correspondence1, forward.correspondence2, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(backward.correspondence2, forward.correspondence1, atol=1e-5, rtol=1e-6)


def test_flow4r_gradients_reach_encoder_decoder_and_heads():
    torch.manual_seed(0)
    model = Flow4R(Flow4RConfig.tiny(head="dpt", factored_flow=True))
    image1, image2 = _images(batch=1)
    prediction = model(image1, image2)
    loss = sum(
        view.points.mean() + view.points_other.mean() + (view.pose_weight * view.confidence).sum()
        for view in (prediction.view1, prediction.view2)
    ) + prediction.correspondence1.mean() + prediction.correspondence2.mean()
    loss.backward()
    for name in ("patch_embed.proj.weight", "enc_blocks.0.attn.qkv.weight", "decoder_embed.weight",
                 "dec_blocks.0.cross_attn.projk.weight", "dec_blocks.3.mlp.fc2.weight",
                 "downstream_head.dpt.act_postprocess.0.0.weight", "downstream_head.dpt.head.4.weight",
                 "flow_head.fusion.0.mlp.0.weight", "flow_head.dpt.head.4.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_factored_flow_head_shape_gradient_and_zero_offset():
    torch.manual_seed(0)
    head = FactoredFlowHead([32, 32, 32, 32], hooks=[0, 2, 3, 4], layer_dims=(8, 8, 16, 16), feature_dim=8,
                            last_dim=4)
    tokens = [torch.randn(2, 6, 32, requires_grad=True) for _ in range(5)]
    other = [torch.randn(2, 6, 32, requires_grad=True) for _ in range(5)]
    correspondence = head(tokens, other, (2, 3))
    assert correspondence.shape == (2, 32, 48, 2)
    correspondence.square().mean().backward()
    assert other[2].grad.abs().sum() > 0  # the camera token of the other view drives the prediction
    assert tokens[1].grad is None  # layer 1 is not hooked
    assert head.fusion[0].mlp[0].weight.grad.abs().sum() > 0
    with torch.no_grad():
        head.dpt.head[4].weight.zero_()
        head.dpt.head[4].bias.zero_()
    centres = pixel_centres(32, 48, torch.device("cpu"))
    torch.testing.assert_close(head(tokens, other, (2, 3)), centres.expand(2, -1, -1, -1))
    torch.testing.assert_close(pixel_centres(2, 3, torch.device("cpu"))[1, 2], torch.tensor([2.5, 1.5]))


def test_flow4r_config_validation():
    with pytest.raises(ValueError, match="patch_size 16"):
        Flow4RConfig(backbone_config=CroCoBackboneConfig(32, 1, 2, 32, 4, 2, patch_size=8)).validate()
    with pytest.raises(ValueError, match=r"dpt_hooks=\[0, 1, 2, 9\] must be four indices in \[0, 4\]"):
        Flow4RConfig.tiny(dpt_hooks=(0, 1, 2, 9)).validate()
    with pytest.raises(ValueError, match="pose_weight_floor"):
        Flow4RConfig.tiny(pose_weight_floor=1.0).validate()
    Flow4R(Flow4RConfig(backbone_config=CroCoBackboneConfig(32, 1, 2, 32, 2, 2, patch_size=8), head="linear"))


# --- parameter names against the official models ---------------------------------------------------------------


def _official_keys(section: str, block_counts: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of one ``== section`` of the key file, ``N`` expanded to block indices."""
    keys: dict[str, tuple[int, ...]] = {}
    inside = False
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("=="):
            inside = line.startswith(f"== {section}")
            continue
        if not inside or not line.startswith("  "):
            continue
        name, shape = line.split(None, 1)
        shape_tuple = tuple(int(v) for v in re.findall(r"\d+", shape))
        match = re.match(r"^(\w+)\.N\.", name)
        indices = range(block_counts[match.group(1)]) if match else [None]
        for index in indices:
            keys[name.replace(".N.", f".{index}.", 1) if match else name] = shape_tuple
    assert keys, f"section {section!r} not found in {KEYS_FILE}"
    return keys


def test_vitl_backbone_names_and_shapes_match_croco_v2():
    expected = _official_keys("CroCoNet", {"enc_blocks": 24, "dec_blocks": 12})
    expected = {name: shape for name, shape in expected.items() if not name.startswith("prediction_head.")}
    with torch.device("meta"):
        backbone = CroCoBackbone(backbone_preset("croco-vitl-basedec"))
    ours = {name: tuple(tensor.shape) for name, tensor in backbone.state_dict().items()}
    assert len(expected) == 585
    assert ours == expected


def test_dpt_head_names_and_shapes_match_dust3r_512_dpt():
    official = _official_keys("DUSt3R 512 dpt", {"enc_blocks": 24, "dec_blocks": 12, "dec_blocks2": 12})
    prefix = "downstream_head1."
    expected = {name[len(prefix):]: shape for name, shape in official.items() if name.startswith(prefix)}
    assert len(expected) == 68
    with torch.device("meta"):
        head = DPTHead([1024, 768, 768, 768], default_dpt_hooks(12), out_channels=4)
    state = head.state_dict(keep_vars=True)
    assert {name: tuple(tensor.shape) for name, tensor in state.items()} == expected
    for index in range(4):  # the aliases are the same parameters, not copies
        assert state[f"dpt.scratch.layer{index + 1}_rn.weight"] is state[f"dpt.scratch.layer_rn.{index}.weight"]
    assert default_dpt_hooks(12) == [0, 6, 9, 12]
