"""Sparse 3D convolution package: parity with dense convolutions and with spconv, gradients, voxelisation, the
kernel-map cache and the U-Net on degenerate inputs. Inputs are a few dozen voxels; everything runs on the CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fourd_ns.networks.sparse import (
    PointSparseUNet,
    PointSparseUNetConfig,
    SparseResUNet,
    SparseTensor,
    SparseUNetConfig,
    VoxelNorm,
    gather_from_voxels,
    scatter_to_voxels,
    spconv_installed,
    voxelize,
)
from fourd_ns.networks.sparse import conv_torch
from fourd_ns.networks.sparse.coords import CoordinateIndex, kernel_offsets, unique_coords
from fourd_ns.networks.sparse.kernel_map import downsample_map, submanifold_map
from fourd_ns.networks.sparse.modules import group_norm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

needs_spconv = pytest.mark.skipif(not spconv_installed(), reason="spconv is not installed (optional: pip install "
                                                                  "'fourd_ns[dev]' brings its CPU build)")


def random_grid(size: int, density: float, shift: int, seed: int) -> torch.Tensor:
    """Occupied voxels of a random ``size³`` grid, coordinates starting at ``shift`` (negative allowed)."""
    generator = torch.Generator().manual_seed(seed)
    occupied = torch.rand(size, size, size, generator=generator) < density
    return occupied.nonzero() + shift


def to_dense(coords: torch.Tensor, features: torch.Tensor, lo: int, size: int) -> torch.Tensor:
    """``[1, C, size, size, size]`` grid whose voxel ``coords − lo`` holds the features."""
    grid = features.new_zeros(1, features.shape[1], size, size, size)
    c = coords - lo
    grid[0, :, c[:, 0], c[:, 1], c[:, 2]] = features.t()
    return grid


def read_dense(grid: torch.Tensor, coords: torch.Tensor, lo: int) -> torch.Tensor:
    c = coords - lo
    return grid[0, :, c[:, 0], c[:, 1], c[:, 2]].t()


def dense_weight(weight: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Our ``[K, C_in, C_out]`` as ``conv3d``'s ``[C_out, C_in, k, k, k]``."""
    k = kernel_size
    return weight.permute(2, 1, 0).reshape(weight.shape[2], weight.shape[1], k, k, k)


# --- parity with dense convolutions ------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size", [1, 3, 5])
def test_submanifold_conv_matches_dense_conv3d_on_the_occupied_voxels(kernel_size):
    coords = random_grid(6, 0.35, shift=-3, seed=0)
    features = torch.randn(coords.shape[0], 3, dtype=torch.float64)
    weight = torch.randn(kernel_size**3, 3, 4, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    out = conv_torch.submanifold_conv3d(SparseTensor(features, coords), weight, bias, kernel_size)
    dense = F.conv3d(to_dense(coords, features, -3, 6), dense_weight(weight, kernel_size), bias,
                     padding=kernel_size // 2)
    assert torch.equal(out.coords, coords) and out.stride == 1
    torch.testing.assert_close(out.features, read_dense(dense, coords, -3), rtol=0, atol=1e-12)


@pytest.mark.parametrize("factor", [2, 3])
def test_downsampling_conv_matches_strided_dense_conv3d(factor):
    # coordinates from -6: a multiple of the factor, so the dense grid's cells are the sparse parent cells
    coords = random_grid(6, 0.4, shift=-6, seed=1)
    features = torch.randn(coords.shape[0], 2, dtype=torch.float64)
    weight = torch.randn(factor**3, 2, 3, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    out = conv_torch.sparse_conv3d(SparseTensor(features, coords), weight, bias, factor)
    expected_coords, _ = unique_coords(torch.div(coords, factor, rounding_mode="floor"))
    assert torch.equal(out.coords, expected_coords) and out.stride == factor
    dense = F.conv3d(to_dense(coords, features, -6, 6), dense_weight(weight, factor), bias, stride=factor)
    torch.testing.assert_close(out.features, read_dense(dense, out.coords, -6 // factor), rtol=0, atol=1e-12)


def test_inverse_conv_matches_dense_conv_transpose3d_on_the_original_voxels():
    coords = random_grid(6, 0.3, shift=-4, seed=2)
    fine = SparseTensor(torch.randn(coords.shape[0], 2, dtype=torch.float64), coords)
    coarse = conv_torch.sparse_conv3d(fine, torch.randn(8, 2, 3, dtype=torch.float64), None, 2)
    weight = torch.randn(8, 3, 2, dtype=torch.float64)
    bias = torch.randn(2, dtype=torch.float64)
    out = conv_torch.sparse_inverse_conv3d(coarse, weight, bias, 2)
    assert torch.equal(out.coords, coords) and out.stride == 1
    # conv_transpose3d's weight is [C_in, C_out, k, k, k]
    dense_w = weight.permute(1, 2, 0).reshape(3, 2, 2, 2, 2)
    dense = F.conv_transpose3d(to_dense(coarse.coords, coarse.features, -2, 3), dense_w, bias, stride=2)
    torch.testing.assert_close(out.features, read_dense(dense, coords, -4), rtol=0, atol=1e-12)


def test_the_unet_is_equivariant_to_shifts_by_its_total_stride():
    torch.manual_seed(0)
    coords = random_grid(7, 0.3, shift=0, seed=3)
    features = torch.randn(coords.shape[0], 3, dtype=torch.float64)
    net = SparseResUNet(SparseUNetConfig.tiny(3, 2, backend="torch")).double()
    out = net(SparseTensor(features, coords)).features
    shifted = net(SparseTensor(features, coords - 12)).features  # 12 = 3 · 4, the tiny net's stride is 4
    torch.testing.assert_close(shifted, out, rtol=0, atol=1e-12)


def test_kernel_map_lookups_and_offset_order():
    offsets = kernel_offsets(3, centred=True)
    assert offsets.shape == (27, 3) and offsets[0].tolist() == [-1, -1, -1] and offsets[13].tolist() == [0, 0, 0]
    assert offsets[1].tolist() == [-1, -1, 0] and offsets[3].tolist() == [-1, 0, -1] and offsets[9].tolist() == [0, -1, -1]
    coords = torch.tensor([[0, 0, 0], [-5, 2, 7], [1, 0, 0]])
    index = CoordinateIndex(coords)
    assert index.find(torch.tensor([[1, 0, 0], [-5, 2, 7], [2, 0, 0], [-9, 9, 9]])).tolist() == [2, 1, -1, -1]
    kernel_map = submanifold_map(coords, 3)
    # offset (+1, 0, 0) is index 22: voxel 0 reads voxel 2, and the mirrored offset 4 the other way round
    assert kernel_map.in_indices[22].tolist() == [2] and kernel_map.out_indices[22].tolist() == [0]
    assert kernel_map.in_indices[4].tolist() == [0] and kernel_map.out_indices[4].tolist() == [2]
    with pytest.raises(ValueError, match="duplicates"):
        CoordinateIndex(torch.tensor([[1, 2, 3], [1, 2, 3]]))


# --- gradients -------------------------------------------------------------------------------------------------------


def test_gradcheck_of_the_three_convolutions():
    coords = random_grid(4, 0.3, shift=-2, seed=4)
    assert 8 <= coords.shape[0] <= 40
    features = torch.randn(coords.shape[0], 2, dtype=torch.float64, requires_grad=True)
    w_sub = torch.randn(27, 2, 2, dtype=torch.float64, requires_grad=True)
    w_down = torch.randn(8, 2, 3, dtype=torch.float64, requires_grad=True)
    w_up = torch.randn(8, 3, 2, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, dtype=torch.float64, requires_grad=True)

    def submanifold(f, w, b):
        return conv_torch.submanifold_conv3d(SparseTensor(f, coords), w, b, 3).features

    def down(f, w):
        return conv_torch.sparse_conv3d(SparseTensor(f, coords), w, None, 2).features

    def down_up(f, w, b):
        fine = SparseTensor(f, coords)
        coarse = conv_torch.sparse_conv3d(fine, w_down.detach(), None, 2)
        return conv_torch.sparse_inverse_conv3d(coarse, w, b, 2).features

    assert torch.autograd.gradcheck(submanifold, (features, w_sub, bias))
    assert torch.autograd.gradcheck(down, (features, w_down))
    assert torch.autograd.gradcheck(down_up, (features, w_up, bias))


def test_written_out_backward_matches_autograd_and_saves_only_features_and_weight():
    coords = random_grid(5, 0.4, shift=-2, seed=5)
    features = torch.randn(coords.shape[0], 3, dtype=torch.float64, requires_grad=True)
    weights = {3: torch.randn(27, 3, 2, dtype=torch.float64), 2: torch.randn(8, 3, 2, dtype=torch.float64)}
    coarse, down = downsample_map(coords, 2)
    maps = [(submanifold_map(coords, 3), weights[3]), (down, weights[2])]
    up_features = torch.randn(coarse.shape[0], 3, dtype=torch.float64, requires_grad=True)
    for kernel_map, weight in maps + [(down.transposed(), weights[2])]:
        inputs = up_features if kernel_map.num_in == coarse.shape[0] else features
        weight = weight.clone().requires_grad_(True)
        saved: list[int] = []

        def pack(tensor):
            saved.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            out = conv_torch.apply_kernel_map(inputs, weight, kernel_map)
        assert sum(saved) <= inputs.numel() * 8 + weight.numel() * 8
        reference = conv_torch.apply_kernel_map_reference(inputs, weight, kernel_map)
        torch.testing.assert_close(out, reference, rtol=0, atol=0)
        grad_out = torch.randn_like(out)
        ours = torch.autograd.grad(out, (inputs, weight), grad_out)
        theirs = torch.autograd.grad(reference, (inputs, weight), grad_out)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    small = features[:12].detach().requires_grad_(True)
    kernel_map = submanifold_map(coords[:12], 3)
    weight = torch.randn(27, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda f, w: conv_torch.apply_kernel_map(f, w, kernel_map), (small, weight))


def test_gradcheck_of_pooling_into_voxels():
    point_to_voxel = torch.tensor([0, 2, 2, 1, 0, 2])
    features = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    for reduce in ("mean", "sum", "max"):
        assert torch.autograd.gradcheck(lambda f: scatter_to_voxels(f, point_to_voxel, 4, reduce), (features,))


# --- spconv ------------------------------------------------------------------------------------------------------


def random_points_tensor(seed: int, num_points: int = 300, channels: int = 3) -> SparseTensor:
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(num_points, 3, generator=generator) * 3.0 - 1.7  # negative coordinates too
    voxels = voxelize(points, 0.25)
    features = torch.randn(voxels.num_voxels, channels, generator=generator)
    return SparseTensor(features, voxels.coords)


@needs_spconv
@pytest.mark.parametrize("seed", [0, 1])
def test_spconv_backend_matches_the_torch_backend_on_random_point_sets(seed):
    from fourd_ns.networks.sparse import conv_spconv

    generator = torch.Generator().manual_seed(10 + seed)
    w_sub = torch.randn(27, 3, 4, generator=generator)
    w_down = torch.randn(8, 4, 5, generator=generator)
    w_up = torch.randn(8, 5, 2, generator=generator)
    bias = torch.randn(4, generator=generator)
    results = []
    with torch.no_grad():
        for ops in (conv_torch, conv_spconv):
            x = random_points_tensor(seed)
            sub = ops.submanifold_conv3d(x, w_sub, bias, 3)
            coarse = ops.sparse_conv3d(sub, w_down, None, 2)
            up = ops.sparse_inverse_conv3d(coarse, w_up, None, 2)
            results.append((sub, coarse, up))
    for ours, theirs in zip(*results):
        assert torch.equal(ours.coords, theirs.coords) and ours.stride == theirs.stride
        torch.testing.assert_close(theirs.features, ours.features, rtol=1e-5, atol=1e-5)


@needs_spconv
def test_spconv_modules_with_converted_weights_match_ours():
    """spconv's own layers (its weight layout, its index pairs, its output order) against the torch backend."""
    import spconv.pytorch as spconv

    from fourd_ns.networks.sparse.conv_spconv import from_spconv_weight, to_spconv_weight

    x = random_points_tensor(3, channels=2)
    lo = torch.div(x.coords.min(0).values, 2, rounding_mode="floor") * 2
    indices = torch.cat([torch.zeros(x.num_voxels, 1, dtype=torch.int64), x.coords - lo], 1).int()
    shape = ((x.coords - lo).max(0).values + 2).tolist()
    sp_in = spconv.SparseConvTensor(x.features, indices, shape, 1)
    sub = spconv.SubMConv3d(2, 3, 3, bias=False, indice_key="s1")
    down = spconv.SparseConv3d(2, 3, 2, 2, bias=False, indice_key="d1")
    up = spconv.SparseInverseConv3d(3, 2, 2, bias=False, indice_key="d1")
    for layer in (sub, down, up):
        torch.testing.assert_close(to_spconv_weight(from_spconv_weight(layer.weight.data), layer.kernel_size[0]),
                                   layer.weight.data, rtol=0, atol=0)
    with torch.no_grad():
        sp_sub = sub(sp_in)
        sp_down = down(sp_in)
        sp_up = up(sp_down)
        ours_sub = conv_torch.submanifold_conv3d(x, from_spconv_weight(sub.weight), None, 3)
        ours_down = conv_torch.sparse_conv3d(x, from_spconv_weight(down.weight), None, 2)
        ours_up = conv_torch.sparse_inverse_conv3d(ours_down, from_spconv_weight(up.weight), None, 2)

    def in_our_order(sp_tensor, coords, offset):
        rows = CoordinateIndex(sp_tensor.indices[:, 1:].long() + offset).find(coords)
        assert bool((rows >= 0).all()) and sp_tensor.indices.shape[0] == coords.shape[0]
        return sp_tensor.features[rows]

    torch.testing.assert_close(in_our_order(sp_sub, x.coords, lo), ours_sub.features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(in_our_order(sp_down, ours_down.coords, lo // 2), ours_down.features,
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(in_our_order(sp_up, x.coords, lo), ours_up.features, rtol=1e-5, atol=1e-5)


@needs_spconv
def test_spconv_backend_refuses_what_its_cpu_build_gets_wrong():
    from fourd_ns.networks.sparse import conv_spconv

    x = random_points_tensor(4)
    with pytest.raises(TypeError, match="float64"):
        conv_spconv.submanifold_conv3d(x.replace_features(x.features.double()), torch.randn(27, 3, 2).double(),
                                       None, 3)
    with pytest.raises(RuntimeError, match="no backward pass on the CPU"):
        conv_spconv.submanifold_conv3d(x, torch.randn(27, 3, 2, requires_grad=True), None, 3)


@needs_spconv
def test_unet_gives_the_same_output_with_either_backend():
    torch.manual_seed(0)
    x = random_points_tensor(5)
    torch_net = SparseResUNet(SparseUNetConfig.tiny(3, 2, backend="torch", context_channels=2))
    spconv_net = SparseResUNet(SparseUNetConfig.tiny(3, 2, backend="spconv", context_channels=2))
    spconv_net.load_state_dict(torch_net.state_dict())
    context = torch.randn(2)
    with torch.no_grad():
        ours = torch_net(x, context).features
        theirs = spconv_net(random_points_tensor(5), context).features
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)


# --- voxelisation ------------------------------------------------------------------------------------------------


def test_voxelize_is_sorted_deterministic_and_puts_each_point_in_its_voxel():
    generator = torch.Generator().manual_seed(6)
    points = torch.randn(200, 3, generator=generator, dtype=torch.float64) * 2.0
    origin = torch.tensor([0.05, -0.1, 0.3], dtype=torch.float64)
    voxels = voxelize(points, 0.5, origin)
    coords = voxels.coords
    keys = [tuple(c) for c in coords.tolist()]
    assert keys == sorted(set(keys)) and bool((coords < 0).any())
    lower = origin + voxels.voxel_size * coords[voxels.point_to_voxel].double()
    assert bool(((points >= lower) & (points < lower + 0.5)).all())
    torch.testing.assert_close(voxels.voxel_centers()[voxels.point_to_voxel], points, rtol=0, atol=0.25 * 3**0.5)
    permutation = torch.randperm(200, generator=generator)
    again = voxelize(points[permutation], 0.5, origin)
    assert torch.equal(again.coords, coords) and torch.equal(again.point_to_voxel, voxels.point_to_voxel[permutation])
    assert voxelize(points[:0], 0.5).coords.shape == (0, 3)
    with pytest.raises(ValueError, match="positive"):
        voxelize(points, 0.0)


def test_scatter_and_gather_round_trip_against_a_loop():
    generator = torch.Generator().manual_seed(7)
    point_to_voxel = torch.tensor([3, 0, 3, 1, 1, 1, 3])
    features = torch.randn(7, 2, generator=generator)
    for reduce, pool in (("mean", lambda f: f.mean(0)), ("sum", lambda f: f.sum(0)),
                         ("max", lambda f: f.max(0).values)):
        pooled = scatter_to_voxels(features, point_to_voxel, 5, reduce)
        for v in range(5):
            members = features[point_to_voxel == v]
            expected = pool(members) if members.shape[0] else torch.zeros(2)
            torch.testing.assert_close(pooled[v], expected)
    voxel_features = torch.randn(5, 4, generator=generator)
    gathered = gather_from_voxels(voxel_features, point_to_voxel)
    assert torch.equal(gathered, voxel_features[point_to_voxel])
    torch.testing.assert_close(scatter_to_voxels(gathered, point_to_voxel, 5, "mean")[point_to_voxel], gathered)


# --- cache, norms and the U-Net ------------------------------------------------------------------------------------


def test_kernel_maps_are_built_once_per_voxel_set_stride_and_kernel():
    x = random_points_tensor(8)
    net = SparseResUNet(SparseUNetConfig.tiny(3, 2, backend="torch"))
    out = net(x)
    # submanifold maps at strides 1, 2, 4 (one kernel size) and the downsamplings 1→2 and 2→4
    assert x.cache.num_builds == 5 and out.cache is x.cache
    net(x.replace_features(torch.randn_like(x.features)))
    net(x)
    assert x.cache.num_builds == 5
    fresh = random_points_tensor(8)
    net(fresh)
    assert fresh.cache.num_builds == 5 and x.cache.num_builds == 5
    with pytest.raises(ValueError, match="different voxel set"):
        SparseTensor(torch.zeros(2, 3), torch.tensor([[0, 0, 0], [1, 1, 1]]), cache=x.cache)


def test_group_norm_matches_torch_and_runs_on_one_voxel():
    norm = torch.nn.GroupNorm(4, 8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    features = torch.randn(11, 8)
    torch.testing.assert_close(group_norm(features, norm), norm(features.t()[None])[0].t())
    one = SparseTensor(torch.randn(1, 8), torch.zeros(1, 3, dtype=torch.int64))
    for kind in ("group", "batch", "none"):
        layer = VoxelNorm(8, kind, num_groups=8).train()
        assert layer(one).features.shape == (1, 8)
        assert torch.isfinite(layer(one).features).all()


def test_unet_on_normal_single_voxel_and_empty_inputs():
    torch.manual_seed(1)
    config = SparseUNetConfig.tiny(3, 5, context_channels=4, backend="torch")
    net = SparseResUNet(config)
    context = torch.randn(4)
    x = random_points_tensor(9)
    out = net(x, context)
    assert out.features.shape == (x.num_voxels, 5) and torch.equal(out.coords, x.coords) and out.stride == 1
    out.features.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    single = net(SparseTensor(torch.randn(1, 3), torch.tensor([[-3, 7, 2]])), context)
    assert single.features.shape == (1, 5) and torch.isfinite(single.features).all()
    empty = net(SparseTensor(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64)), context)
    assert empty.features.shape == (0, 5)
    empty.features.sum().backward()
    with pytest.raises(ValueError, match="context"):
        net(x)


def test_group_norm_unet_is_identical_in_train_and_eval_and_zero_init_starts_at_zero():
    torch.manual_seed(2)
    x = random_points_tensor(10)
    net = SparseResUNet(SparseUNetConfig.tiny(3, 2, backend="torch"))
    with torch.no_grad():
        train_out = net.train()(x).features
        eval_out = net.eval()(x).features
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)
    zero = SparseResUNet(SparseUNetConfig.tiny(3, 2, output_init="zero", norm="batch", activation="leaky_relu"))
    assert torch.equal(zero(x).features, torch.zeros(x.num_voxels, 2))


def test_point_unet_handles_permutations_a_single_point_and_no_points():
    torch.manual_seed(3)
    config = PointSparseUNetConfig(SparseUNetConfig.tiny(4, 3, backend="torch"), voxel_size=0.3)
    net = PointSparseUNet(config)
    points = torch.rand(120, 3) * 2.0
    features = torch.randn(120, 4)
    out = net(points, features)
    assert out.shape == (120, 3)
    permutation = torch.randperm(120)
    torch.testing.assert_close(net(points[permutation], features[permutation]), out[permutation])
    assert net(points[:1], features[:1]).shape == (1, 3)
    assert net(points[:0], features[:0]).shape == (0, 3)


def test_backend_choice_and_backend_independent_parameter_names():
    from fourd_ns.networks.sparse import resolve_backend, spconv_has_cuda

    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert resolve_backend("torch", torch.device("cuda")) == "torch"
    expected_cuda = "spconv" if spconv_has_cuda() else "torch"
    assert resolve_backend("auto", torch.device("cuda")) == expected_cuda
    with pytest.raises(ValueError, match="unknown sparse-conv backend"):
        resolve_backend("minkowski", torch.device("cpu"))  # type: ignore[arg-type]
    if spconv_installed() and not spconv_has_cuda():
        with pytest.raises(RuntimeError, match="CPU build"):
            resolve_backend("spconv", torch.device("cuda"))
    keys = {backend: set(SparseResUNet(SparseUNetConfig.tiny(3, 2, backend=backend)).state_dict())
            for backend in ("torch", "spconv", "auto")}
    assert keys["torch"] == keys["spconv"] == keys["auto"]
    assert "stem.0.conv.weight" in keys["torch"] and "head.linear.weight" in keys["torch"]
