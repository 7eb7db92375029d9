"""Weight loading for Flow4R: our own folders, CroCo v2 / CroCo-training / DUSt3R ``.pth`` files, DUSt3R Hugging Face
folders and an offline hub cache — each written in its real container format from tiny random models of our own
classes carrying the official key names. Nothing is downloaded."""

from __future__ import annotations

import io
import json
import math
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors import safe_open
from safetensors.torch import save_model
from torch import nn

from fourd_ns.feedforward.croco_backbone import CroCoBackbone, backbone_preset
from fourd_ns.feedforward.croco_blocks import DecoderBlock
from fourd_ns.feedforward.dpt_head import DPTHead, default_dpt_hooks
from fourd_ns.feedforward.flow4r import Flow4R, Flow4RConfig
from fourd_ns.feedforward.linear_head import LinearHead
from fourd_ns.feedforward.pretrained import (
    ShapeMismatch,
    from_pretrained,
    UnparsedValue,
    load_pretrained,
    parse_constructor_call,
    save_pretrained,
)

TINY_KWARGS = dict(enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, dec_depth=4, dec_num_heads=2)
TINY_DPT = dict(layer_dims=(8, 16, 32, 64), feature_dim=16, last_dim=8)
DUST3R_MODEL_STRING = (
    "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
    "head_type='{head}', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, dec_depth=4, dec_num_heads=2)"
)


class TinyCroCo(CroCoBackbone):
    """CroCo v2's parameter names: our backbone plus the masked-image pretraining head."""

    def __init__(self) -> None:
        super().__init__(backbone_preset("tiny"))
        self.prediction_head = nn.Linear(32, 16 * 16 * 3)


class TinyDust3r(CroCoBackbone):
    """DUSt3R's parameter names: our backbone plus ``dec_blocks2`` and two 4-channel (xyz + conf) heads."""

    def __init__(self, head_type: str) -> None:
        super().__init__(backbone_preset("tiny"))
        self.dec_blocks2 = nn.ModuleList(DecoderBlock(32, 2) for _ in range(4))
        for name in ("downstream_head1", "downstream_head2"):
            if head_type == "dpt":
                head = DPTHead([32, 32, 32, 32], default_dpt_hooks(4), 4, **TINY_DPT)
            else:
                head = LinearHead(32, 4, 16)
            setattr(self, name, head)


def _images(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.rand(1, 3, 32, 48, generator=generator) * 2 - 1 for _ in range(2))


def _assert_prediction_equal(a, b) -> None:
    for view_a, view_b in [(a.view1, b.view1), (a.view2, b.view2)]:
        for name in ("points", "points_other", "pose_weight", "confidence"):
            torch.testing.assert_close(getattr(view_a, name), getattr(view_b, name), rtol=0, atol=0)
    if a.correspondence1 is not None:
        torch.testing.assert_close(a.correspondence1, b.correspondence1, rtol=0, atol=0)


def _assert_backbone_loaded(model: Flow4R, written: dict[str, torch.Tensor]) -> None:
    ours = model.state_dict()
    backbone_keys = [k for k in CroCoBackbone(backbone_preset("tiny")).state_dict()]
    assert len(backbone_keys) == 1 + 2 + 2 * 12 + 2 + 2 + 4 * 24 + 2
    for key in backbone_keys:
        torch.testing.assert_close(ours[key], written[key], rtol=0, atol=0)


def _no_console() -> Console:
    return Console(file=io.StringIO(), width=200)


# --- our own format --------------------------------------------------------------------------------------------


def test_own_format_round_trip_restores_config_aliases_and_outputs(tmp_path: Path):
    torch.manual_seed(0)
    model = Flow4R(Flow4RConfig.tiny(factored_flow=True, pose_weight_floor=0.01)).eval()
    folder = save_pretrained(model, tmp_path / "flow4r")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "flow4r" and config["backbone"] == "tiny" and config["factored_flow"] is True
    with safe_open(str(folder / "model.safetensors"), "pt") as stored:
        names = set(stored.keys())
    assert "downstream_head.dpt.scratch.layer1_rn.weight" in names
    assert "downstream_head.dpt.scratch.layer_rn.0.weight" not in names  # save_model keeps one name per tensor

    loaded, report = load_pretrained(folder, strict=True)
    assert loaded.config == model.config
    assert report.is_exact and report.checkpoint_format == "fourd_ns"
    assert set(report.loaded) == set(model.state_dict())
    state = loaded.state_dict(keep_vars=True)
    assert state["flow_head.dpt.scratch.layer_rn.2.weight"] is state["flow_head.dpt.scratch.layer3_rn.weight"]
    image1, image2 = _images()
    with torch.no_grad():
        _assert_prediction_equal(loaded.eval()(image1, image2), model(image1, image2))


def test_own_format_pickle_fallback_and_config_overrides(tmp_path: Path):
    torch.manual_seed(0)
    model = Flow4R(Flow4RConfig.tiny(head="linear"))
    folder = save_pretrained(model, tmp_path / "flow4r")
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    loaded, report = load_pretrained(folder, config_overrides={"factored_flow": True})
    assert loaded.config.factored_flow and loaded.config.head == "linear"
    assert report.missing == [k for k in loaded.state_dict() if k.startswith("flow_head.")]
    assert not report.unused and not report.shape_mismatched
    with pytest.raises(ValueError, match="strict loading"):
        load_pretrained(folder, config_overrides={"factored_flow": True}, strict=True)
    with pytest.raises(ValueError, match=r"unknown Flow4RConfig settings \['heads'\]; valid settings"):
        load_pretrained(folder, config_overrides={"heads": "dpt"})


def test_a_training_run_folder_resolves_to_its_newest_checkpoint(tmp_path: Path):
    torch.manual_seed(0)
    run = tmp_path / "run"
    older = Flow4R(Flow4RConfig.tiny(head="linear"))
    newer = Flow4R(Flow4RConfig.tiny(head="linear"))
    save_pretrained(older, run / "checkpoints" / "step-0000900")
    save_pretrained(newer, run / "checkpoints" / "step-0001000")
    (run / "checkpoints" / "step-0002000.partial").mkdir()  # an unfinished save is not a checkpoint
    loaded, report = load_pretrained(run)
    assert report.source.endswith(f"(newest checkpoint of the run folder {run})")
    for name, tensor in newer.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


# --- CroCo ----------------------------------------------------------------------------------------------------


def test_croco_v2_release_checkpoint(tmp_path: Path):
    torch.manual_seed(0)
    written = TinyCroCo().state_dict()
    path = tmp_path / "CroCo_V2_Tiny.pth"
    torch.save({"model": written, "croco_kwargs": dict(TINY_KWARGS, pos_embed="RoPE100", img_size=224,
                                                       mask_ratio=0.9)}, path)
    model, report = load_pretrained(path, config_overrides={"head": "linear"})
    assert report.checkpoint_format == "croco"
    assert model.config.backbone == "tiny" and model.config.backbone_config is None
    _assert_backbone_loaded(model, written)
    assert set(report.unused) == {"prediction_head.weight", "prediction_head.bias"}
    assert "pretraining head" in report.unused["prediction_head.weight"]
    assert report.missing == ["downstream_head.proj.weight", "downstream_head.proj.bias"]
    assert not report.shape_mismatched
    assert any("img_size=224" in note and "mask_ratio=0.9" in note for note in report.notes)


def test_croco_training_checkpoint_with_constructor_string(tmp_path: Path):
    torch.manual_seed(0)
    written = TinyCroCo().state_dict()
    model_string = ("CroCoNet(enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, dec_depth=4, "
                    "dec_num_heads=2, pos_embed='RoPE100', img_size=(224, 224))")
    path = tmp_path / "checkpoint-last.pth"
    torch.save({"model": written, "optimizer": {"state": {}, "param_groups": []}, "scaler": {"scale": 1024.0},
                "args": Namespace(model=model_string, lr=1.5e-4, output_dir="out"), "epoch": 3}, path)
    model, report = load_pretrained(path, config_overrides={"dpt_layer_dims": (8, 16, 32, 64), "dpt_feature_dim": 16,
                                                         "dpt_last_dim": 8})
    assert report.checkpoint_format == "croco-training"
    _assert_backbone_loaded(model, written)
    assert set(report.unused) == {"prediction_head.weight", "prediction_head.bias"}
    assert report.missing == [k for k in model.state_dict() if k.startswith("downstream_head.")]
    assert len(report.missing) == 68  # the full DPT head, aliases included


@pytest.mark.parametrize("where", ["croco_kwargs", "args"])
def test_cosine_position_embedding_is_rejected_with_advice(tmp_path: Path, where: str):
    written = TinyCroCo().state_dict()
    path = tmp_path / "CroCo.pth"
    if where == "croco_kwargs":  # CroCoNet's default pos_embed is 'cosine' (CroCo v1)
        torch.save({"model": written, "croco_kwargs": dict(TINY_KWARGS)}, path)
    else:
        torch.save({"model": written, "args": Namespace(model="CroCoNet(pos_embed='cosine')")}, path)
    with pytest.raises(ValueError, match=r"pos_embed='cosine' is not supported.*CroCo_V2_ViTLarge_BaseDecoder"):
        load_pretrained(path)


# --- DUSt3R ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("head_type", ["dpt", "linear"])
def test_dust3r_pth_checkpoint(tmp_path: Path, head_type: str):
    torch.manual_seed(0)
    source = TinyDust3r(head_type)
    written = source.state_dict()
    path = tmp_path / f"DUSt3R_Tiny_{head_type}.pth"
    args = Namespace(model=DUST3R_MODEL_STRING.format(head=head_type), lr=1e-4, epochs=90)
    torch.save({"model": written, "optimizer": {}, "args": args, "epoch": 89}, path)
    assert "-inf" in args.model
    model, report = load_pretrained(path)
    assert report.checkpoint_format == "dust3r"
    assert model.config.head == head_type
    _assert_backbone_loaded(model, written)
    ours = model.state_dict()
    expected_unused = {k for k in written if k.startswith(("dec_blocks2.", "downstream_head2."))}
    assert set(report.unused) == expected_unused
    assert "shares dec_blocks" in report.unused["dec_blocks2.0.norm1.weight"]
    assert not report.missing
    if head_type == "dpt":
        assert model.config.dpt_layer_dims == (8, 16, 32, 64) and model.config.dpt_feature_dim == 16
        assert model.config.dpt_last_dim == 8  # read from the checkpoint's shapes
        assert report.shape_mismatched == {
            "downstream_head.dpt.head.4.weight": ShapeMismatch("downstream_head1.dpt.head.4.weight", (4, 8, 1, 1),
                                                               (8, 8, 1, 1)),
            "downstream_head.dpt.head.4.bias": ShapeMismatch("downstream_head1.dpt.head.4.bias", (4,), (8,)),
        }
        for key, tensor in written.items():
            if key.startswith("downstream_head1.") and ".head.4." not in key:
                torch.testing.assert_close(ours["downstream_head." + key[len("downstream_head1."):]], tensor,
                                           rtol=0, atol=0)
    else:
        assert report.shape_mismatched == {
            "downstream_head.proj.weight": ShapeMismatch("downstream_head1.proj.weight", (1024, 32), (2048, 32)),
            "downstream_head.proj.bias": ShapeMismatch("downstream_head1.proj.bias", (1024,), (2048,)),
        }
    output = _no_console()
    report.print(output)
    text = output.file.getvalue()
    assert "dec_blocks2.*" in text and "downstream_head2" in text and "unused" in text and "fresh" in text
    with pytest.raises(ValueError, match="strict loading"):
        load_pretrained(path, strict=True)


def test_dust3r_hugging_face_folder_recreates_dpt_aliases(tmp_path: Path):
    torch.manual_seed(0)
    source = TinyDust3r("dpt")
    written = source.state_dict()
    folder = tmp_path / "DUSt3R_Tiny_512_dpt"
    folder.mkdir()
    naver_config = dict(TINY_KWARGS, conf_mode=["exp", 1, math.inf], depth_mode=["exp", -math.inf, math.inf],
                        freeze="none", head_type="dpt", img_size=[512, 512], landscape_only=False,
                        output_mode="pts3d", patch_embed_cls="PatchEmbedDust3R", pos_embed="RoPE100")
    (folder / "config.json").write_text(json.dumps(naver_config, sort_keys=True))
    assert "Infinity" in (folder / "config.json").read_text()
    save_model(source, str(folder / "model.safetensors"))
    with safe_open(str(folder / "model.safetensors"), "pt") as stored:
        assert "downstream_head1.dpt.scratch.layer_rn.0.weight" not in set(stored.keys())

    model, report = load_pretrained(folder)
    assert report.checkpoint_format == "dust3r-hf"
    # depth/conf/output modes match Flow4R's post-processing (JSON lists included); the rest is only listed
    assert report.notes == ["constructor settings that do not change the architecture, ignored: freeze='none', "
                            "img_size=[512, 512], landscape_only=False, patch_embed_cls='PatchEmbedDust3R'"]
    console = _no_console()
    report.print(console)
    assert "img_size=[512, 512]" in console.file.getvalue()  # printed literally, not taken for rich markup
    _assert_backbone_loaded(model, written)
    ours = model.state_dict()
    for index in range(4):
        alias = f"downstream_head.dpt.scratch.layer_rn.{index}.weight"
        assert alias in report.loaded
        torch.testing.assert_close(ours[alias], written[f"downstream_head1.dpt.scratch.layer{index + 1}_rn.weight"],
                                   rtol=0, atol=0)
    assert set(report.shape_mismatched) == {"downstream_head.dpt.head.4.weight", "downstream_head.dpt.head.4.bias"}
    assert not report.missing
    assert set(report.unused) == {k for k in source.state_dict() if k.startswith(("dec_blocks2.", "downstream_head2."))
                                  and not k.startswith("downstream_head2.dpt.scratch.layer_rn.")}

    (folder / "config.json").write_text(json.dumps(dict(naver_config, depth_mode=["square", 0, math.inf])))
    _, other_mode = load_pretrained(folder)
    assert any("depth_mode=('square', 0, inf) differs" in note for note in other_mode.notes)


# --- hub cache and errors --------------------------------------------------------------------------------------


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def test_hub_id_resolved_from_an_offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _offline(monkeypatch)
    torch.manual_seed(0)
    model = Flow4R(Flow4RConfig.tiny(head="linear")).eval()
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--fourd--tiny-flow4r"
    save_pretrained(model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)

    loaded, report = load_pretrained("fourd/tiny-flow4r", cache_dir=tmp_path / "hub")
    assert report.is_exact and "fourd/tiny-flow4r" in report.source
    image1, image2 = _images()
    with torch.no_grad():
        _assert_prediction_equal(loaded.eval()(image1, image2), model(image1, image2))
    console = _no_console()
    by_commit = from_pretrained("fourd/tiny-flow4r", cache_dir=tmp_path / "hub", revision=commit, console=console)
    assert by_commit.config == model.config
    assert f"fourd/tiny-flow4r (Hugging Face hub, revision {commit})" in console.file.getvalue()


def test_missing_weights_error_names_what_was_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _offline(monkeypatch)
    with pytest.raises(FileNotFoundError) as error:
        load_pretrained("naver/absent_model", cache_dir=tmp_path / "hub")
    message = str(error.value)
    for expected in ("naver/absent_model", "does not exist", "HF_HUB_OFFLINE=1", str(tmp_path / "hub"),
                     "hf download", ".pth", "save_pretrained"):
        assert expected in message, expected
    with pytest.raises(FileNotFoundError, match=r"(?s)nothing\.pth: does not exist.*not of the form owner/name"):
        load_pretrained(tmp_path / "nothing.pth")


def test_unsupported_checkpoints_are_explained(tmp_path: Path):
    flow3r_like = tmp_path / "flow3r.bin"
    torch.save({"encoder.patch_embed.proj.weight": torch.zeros(2), "decoder.0.attn.qkv.weight": torch.zeros(2)},
               flow3r_like)
    with pytest.raises(ValueError, match="Flow3r.*cannot be loaded"):
        load_pretrained(flow3r_like)
    unknown_class = tmp_path / "mast3r.pth"
    torch.save({"model": {}, "args": Namespace(model="AsymmetricMASt3R(pos_embed='RoPE100')")}, unknown_class)
    with pytest.raises(ValueError, match="'AsymmetricMASt3R' is not supported"):
        load_pretrained(unknown_class)
    not_torch = tmp_path / "weights.pth"
    not_torch.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="could not be loaded as a PyTorch checkpoint"):
        load_pretrained(not_torch)
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="neither a fourd_ns Flow4R config"):
        load_pretrained(folder)


def test_constructor_strings_are_parsed_never_evaluated(tmp_path: Path):
    name, kwargs = parse_constructor_call(DUST3R_MODEL_STRING.format(head="dpt"))
    assert name == "AsymmetricCroCo3DStereo"
    assert kwargs["depth_mode"] == ("exp", -math.inf, math.inf) and kwargs["img_size"] == (512, 512)
    assert kwargs["enc_embed_dim"] == 32 and kwargs["head_type"] == "dpt"
    _, hostile = parse_constructor_call("CroCoNet(enc_embed_dim=__import__('os').getcwd(), norm_layer=LayerNorm)")
    assert hostile["enc_embed_dim"] == UnparsedValue("__import__('os').getcwd()")
    assert hostile["norm_layer"] == UnparsedValue("LayerNorm")
    with pytest.raises(ValueError, match="positional"):
        parse_constructor_call("CroCoNet(768)")
    path = tmp_path / "hostile.pth"
    torch.save({"model": {}, "args": Namespace(model="CroCoNet(enc_embed_dim=__import__('os').getcwd(), "
                                                     "pos_embed='RoPE100')")}, path)
    with pytest.raises(ValueError, match=r"enc_embed_dim=__import__\('os'\).getcwd\(\) is not an integer"):
        load_pretrained(path)
