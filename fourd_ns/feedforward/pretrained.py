"""Saving and loading Flow4R weights: our own checkpoints, CroCo v2 and DUSt3R checkpoints, local or from the hub.

``from_pretrained(name_or_path)`` accepts

- a **folder** with ``config.json`` + ``model.safetensors`` (fallback ``pytorch_model.bin``): either written by
  :func:`save_pretrained` (``"model_type": "flow4r"`` in the config) or a DUSt3R Hugging Face folder (naver's
  constructor keys, with JSON ``Infinity``, e.g. ``naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt``);
- a **Hugging Face hub id** of such a folder, fetched with ``huggingface_hub.snapshot_download`` (respects
  ``HF_HUB_OFFLINE`` — then only the local cache is read — ``cache_dir`` and ``revision``);
- a **``.pth`` file**: a released CroCo v2 checkpoint ``{'model', 'croco_kwargs'}``, a DUSt3R checkpoint
  ``{'model', 'args'}`` with ``args.model = "AsymmetricCroCo3DStereo(...)"``, or a CroCo training checkpoint whose
  ``args.model`` is ``"CroCoNet(...)"``.

How each format maps onto Flow4R (which shares one decoder and one head between the views):

- CroCo: encoder and decoder load as they are; ``prediction_head.*`` (the masked-image pretraining head) is not
  used; Flow4R's head starts fresh — this is how the paper initialises Flow4R (§4).
- DUSt3R: encoder and ``dec_blocks`` load; ``dec_blocks2`` (DUSt3R's view-2 decoder) is not used by the shared
  decoder; the head body loads from ``downstream_head1`` wherever names and shapes match (the DPT's last conv has
  4 = xyz + conf output channels instead of Flow4R's 8 and starts fresh); ``downstream_head2`` is not used. DPT
  widths are read from the checkpoint's tensor shapes.
- Constructor settings map onto :class:`Flow4RConfig`: the six sizes, ``mlp_ratio``, ``patch_size``, ``pos_embed``
  (``RoPE<base>``; CroCo v1's ``cosine`` embedding is not supported) and DUSt3R's ``head_type``. Settings that do
  not change the architecture (``img_size``, ``mask_ratio``, ``patch_embed_cls``, ``depth_mode`` …) are listed in
  the report's notes. ``config_overrides`` then replace any setting (e.g. ``{"head": "linear"}``).

Nothing is dropped silently: a :class:`LoadReport` lists every loaded, missing (initialised fresh), unused and
shape-mismatched key and is printed with rich. The DPT head's aliased convolutions (``scratch.layer{1..4}_rn`` =
``scratch.layer_rn.{0..3}``) are re-created from whichever name a file holds (``safetensors.torch.save_model``
keeps only the first).

Pickled checkpoints are read with ``torch.load(weights_only=True)``, allowing only ``argparse.Namespace`` besides
tensors; constructor strings (which contain bare ``inf``) are parsed with ``ast`` and never evaluated.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import pickle
import re
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Union

import huggingface_hub
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from safetensors.torch import load_file, save_model
from torch import Tensor

from fourd_ns.feedforward.croco_backbone import BACKBONE_PRESETS, CroCoBackboneConfig
from fourd_ns.feedforward.flow4r import Flow4R, Flow4RConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_WEIGHTS_NAME = "pytorch_model.bin"
MODEL_TYPE = "flow4r"
FORMAT_VERSION = 1
"""Version of our ``config.json`` layout; a file with a higher version was written by a newer fourd_ns."""

CROCO_CONSTRUCTOR_DEFAULTS: dict[str, Any] = dict(
    enc_embed_dim=768, enc_depth=12, enc_num_heads=12, dec_embed_dim=512, dec_depth=8, dec_num_heads=16,
    mlp_ratio=4.0, patch_size=16, pos_embed="cosine", norm_im2_in_dec=True,
)
"""CroCoNet's constructor defaults (CroCo v1 sizes), used for settings a checkpoint does not spell out."""

_ARCHITECTURE_SETTINGS = set(CROCO_CONSTRUCTOR_DEFAULTS) | {"head_type"}
_EXPECTED_DUST3R_SETTINGS = {"output_mode": "pts3d", "depth_mode": ("exp", -math.inf, math.inf),
                             "conf_mode": ("exp", 1, math.inf)}
"""DUSt3R settings whose values Flow4R's post-processing matches; other values are noted in the report."""

SUPPORTED_FORMATS_HELP = (
    "supported: a folder with config.json + model.safetensors (written by fourd_ns save_pretrained, or a DUSt3R "
    "Hugging Face folder such as naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt); a CroCo v2 .pth "
    "(e.g. CroCo_V2_ViTLarge_BaseDecoder.pth); a DUSt3R .pth (e.g. DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth)"
)


class ShapeMismatch(NamedTuple):
    checkpoint_key: str
    checkpoint_shape: tuple[int, ...]
    model_shape: tuple[int, ...]


@dataclass
class LoadReport:
    """What happened to every key when a checkpoint was loaded into a Flow4R model."""

    source: str
    """The path or hub id the weights came from."""
    checkpoint_format: str
    """``fourd_ns``, ``croco``, ``croco-training``, ``dust3r`` or ``dust3r-hf``."""
    loaded: list[str] = field(default_factory=list)
    """Model keys set from the checkpoint (aliases included)."""
    missing: list[str] = field(default_factory=list)
    """Model keys the checkpoint has no tensor for: they keep their fresh initialisation."""
    unused: dict[str, str] = field(default_factory=dict)
    """Checkpoint keys that were not loaded, with the reason."""
    shape_mismatched: dict[str, ShapeMismatch] = field(default_factory=dict)
    """Model key → the checkpoint tensor of a different shape that would have filled it (fresh initialisation)."""
    notes: list[str] = field(default_factory=list)
    """Checkpoint settings that were ignored or differ from Flow4R's conventions."""

    @property
    def is_exact(self) -> bool:
        """Every model key loaded and every checkpoint key used."""
        return not (self.missing or self.unused or self.shape_mismatched)

    def table(self) -> Table:
        """A rich table summarising the keys, grouped by their top-level module."""
        table = Table()
        table.add_column("status")
        table.add_column("keys")
        table.add_column("count", justify="right")
        table.add_column("why")
        for prefix, names in _group_by_module(self.loaded).items():
            table.add_row("loaded", escape(prefix), str(len(names)), "")
        for prefix, names in _group_by_module(self.missing).items():
            table.add_row("[yellow]fresh[/yellow]", escape(_describe_group(prefix, names)), str(len(names)),
                          "not in the checkpoint")
        for key, mismatch in self.shape_mismatched.items():
            table.add_row("[yellow]fresh[/yellow]", escape(key), "1",
                          escape(f"checkpoint {mismatch.checkpoint_key} has shape {mismatch.checkpoint_shape}, "
                                 f"model {mismatch.model_shape}"))
        by_reason: dict[str, list[str]] = defaultdict(list)
        for key, reason in self.unused.items():
            by_reason[reason].append(key)
        for reason, keys in by_reason.items():
            for prefix, names in _group_by_module(keys).items():
                table.add_row("[red]unused[/red]", escape(_describe_group(prefix, names)), str(len(names)),
                              escape(reason))
        for note in self.notes:
            table.add_row("note", "", "", escape(note))
        return table

    def print(self, console: Optional[Console] = None) -> None:
        console = console or Console()
        console.print(f"Flow4R weights from {self.source} ({self.checkpoint_format})", markup=False, soft_wrap=True)
        console.print(self.table())

    def summary(self) -> str:
        """One line per category with the affected keys (for error messages and logs)."""
        lines = [f"loaded {len(self.loaded)} keys from {self.source} ({self.checkpoint_format})"]
        if self.missing:
            lines.append(f"missing (initialised fresh): {self.missing}")
        if self.shape_mismatched:
            lines.append(f"shape-mismatched (initialised fresh): {dict(self.shape_mismatched)}")
        if self.unused:
            lines.append(f"unused checkpoint keys: {sorted(self.unused)}")
        return "\n".join(lines)


def _group_by_module(names: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        head, _, rest = name.partition(".")
        groups[f"{head}.*" if rest else head].append(name)
    return dict(groups)


def _describe_group(prefix: str, names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 4 else prefix


# ---------------------------------------------------------------------------------------------------------------
# Saving


def save_pretrained(model: Flow4R, folder: Union[str, Path]) -> Path:
    """Write ``config.json`` (our settings, ``"model_type": "flow4r"``) and ``model.safetensors`` to ``folder``.

    ``safetensors.torch.save_model`` stores each shared tensor once (the DPT aliases keep their first name);
    :func:`from_pretrained` re-creates them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"model_type": MODEL_TYPE, "format_version": FORMAT_VERSION, **model.config.to_dict()}
    (folder / CONFIG_NAME).write_text(json.dumps(settings, indent=2) + "\n")
    save_model(model, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    return folder


# ---------------------------------------------------------------------------------------------------------------
# Finding the files


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _hub_offline() -> bool:
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)  # read at call time: tests and users may toggle it


def newest_run_checkpoint(run_dir: Path) -> Optional[Path]:
    """The newest ``checkpoints/step-N`` folder (highest N, with a ``config.json``) of a `fourd-train-flow4r` run
    folder, so that a run folder can be passed wherever weights are expected; None if there is none."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    steps = [
        (int(match.group(1)), child)
        for child in folder.iterdir()
        if (match := re.fullmatch(r"step-(\d+)", child.name)) and (child / CONFIG_NAME).is_file()
    ]
    return max(steps)[1] if steps else None


def resolve_weights(
    name_or_path: Union[str, Path], cache_dir: Optional[Union[str, Path]] = None, revision: Optional[str] = None
) -> tuple[Path, str]:
    """(the local file or folder holding the weights, a description of where it came from).

    A path that exists wins; otherwise a string of the form ``owner/name`` is fetched from the Hugging Face hub
    (only from the local cache when ``HF_HUB_OFFLINE`` is set). Raises FileNotFoundError naming everything tried.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir() and not (path / CONFIG_NAME).exists():
        newest = newest_run_checkpoint(path)
        if newest is not None:
            return newest, f"{newest} (newest checkpoint of the run folder {path})"
    if path.exists():
        return path, str(path)
    tried = [f"a local file or folder at {path.resolve()}: does not exist"]
    name = str(name_or_path)
    if _REPO_ID.match(name) and not name.endswith((".pth", ".pt", ".bin", ".safetensors")):
        offline = _hub_offline()
        try:
            folder = huggingface_hub.snapshot_download(
                name,
                revision=revision,
                cache_dir=str(cache_dir) if cache_dir is not None else None,
                allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, PICKLE_WEIGHTS_NAME],
                local_files_only=offline,
            )
            return Path(folder), f"{name} (Hugging Face hub, revision {revision or 'main'})"
        except (OSError, ValueError) as error:  # hub/network/cache errors are OSErrors, bad ids ValueErrors
            tried.append(
                f"the Hugging Face hub model {name!r} (revision {revision or 'main'}, cache_dir "
                f"{cache_dir if cache_dir is not None else 'default (HF_HUB_CACHE)'}, HF_HUB_OFFLINE="
                f"{int(offline)}): {type(error).__name__}: {error}"
            )
    else:
        tried.append(f"{name!r} is not of the form owner/name, so the Hugging Face hub was not asked")
    raise FileNotFoundError(
        f"could not find Flow4R / CroCo / DUSt3R weights {name!r}. Looked for:\n  - " + "\n  - ".join(tried)
        + "\nProvide the weights in one of these ways:\n"
        "  - on a machine with internet access run e.g. `hf download naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt "
        "--local-dir <folder>` and pass <folder> as the weights path (or copy the hub cache and set HF_HUB_CACHE / "
        "cache_dir);\n"
        "  - pass a CroCo v2 or DUSt3R .pth file (e.g. CroCo_V2_ViTLarge_BaseDecoder.pth from "
        "https://github.com/naver/croco) as the weights path;\n"
        "  - pass a folder written by fourd_ns.feedforward.pretrained.save_pretrained.\n"
        f"({SUPPORTED_FORMATS_HELP})"
    )


# ---------------------------------------------------------------------------------------------------------------
# Reading checkpoints


@dataclass(frozen=True)
class UnparsedValue:
    """A constructor argument that is not a plain literal (kept as source text; fine for ignored settings)."""

    source: str


def _literal(node: ast.AST) -> Any:
    """Value of a literal expression node; ``inf``/``nan`` names allowed; anything else → UnparsedValue."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        values = [_literal(element) for element in node.elts]
        return tuple(values) if isinstance(node, ast.Tuple) else values
    if isinstance(node, ast.Dict) and all(key is not None for key in node.keys):
        return {_literal(key): _literal(value) for key, value in zip(node.keys, node.values)}
    if isinstance(node, ast.Name) and node.id in ("inf", "nan"):
        return float(node.id)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand)
        if isinstance(operand, (int, float)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    return UnparsedValue(ast.unparse(node))


def parse_constructor_call(text: str) -> tuple[str, dict[str, Any]]:
    """``"Name(a=1, b=('exp', -inf, inf))"`` → ``("Name", {"a": 1, "b": ("exp", -inf, inf)})`` without evaluating."""
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ValueError(f"cannot parse the model constructor string {text!r}: {error}") from error
    if not isinstance(call, ast.Call) or not isinstance(call.func, (ast.Name, ast.Attribute)):
        raise ValueError(f"the model constructor string {text!r} is not a call like ClassName(key=value, ...)")
    if call.args or any(keyword.arg is None for keyword in call.keywords):
        raise ValueError(f"the model constructor string {text!r} has positional or ** arguments; only key=value "
                         "arguments can be interpreted")
    name = call.func.id if isinstance(call.func, ast.Name) else call.func.attr
    return name, {keyword.arg: _literal(keyword.value) for keyword in call.keywords}


def _torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` allowing the ``argparse.Namespace`` of CroCo/DUSt3R training checkpoints."""
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5; 2.4 only has the global list
    if safe_globals is None:
        torch.serialization.add_safe_globals([argparse.Namespace])
    try:
        with safe_globals([argparse.Namespace]) if safe_globals is not None else nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(
            f"{path} could not be loaded as a PyTorch checkpoint with weights_only=True: either it is not a "
            "checkpoint, or it holds Python objects other than tensors and argparse.Namespace, which are not "
            f"unpickled for safety ({error}). Re-save the weights as {{'model': state_dict, 'args': "
            f"Namespace(model='...')}} or {{'model': state_dict, 'croco_kwargs': {{...}}}}, or convert them with "
            f"save_pretrained; {SUPPORTED_FORMATS_HELP}"
        ) from error


@dataclass
class Checkpoint:
    """A checkpoint read from disk, before its keys are matched against a model."""

    checkpoint_format: str
    config: Flow4RConfig
    state_dict: dict[str, Tensor]
    key_map: Callable[[str], Union[str, "_Unused"]]
    """Checkpoint key → model key, or the reason it is not used."""
    notes: list[str] = field(default_factory=list)


class _Unused(NamedTuple):
    reason: str


def _identity_keys(name: str) -> str:
    return name


def _croco_keys(name: str) -> Union[str, _Unused]:
    if name.startswith("prediction_head."):
        return _Unused("CroCo's masked-image pretraining head; Flow4R's heads start fresh")
    return name


def _dust3r_keys(name: str) -> Union[str, _Unused]:
    if name.startswith("dec_blocks2."):
        return _Unused("DUSt3R's second (view-2) decoder; Flow4R shares dec_blocks between both views")
    if name.startswith("downstream_head2."):
        return _Unused("DUSt3R's view-2 head; Flow4R's shared head loads from downstream_head1")
    if name.startswith("downstream_head1."):
        return "downstream_head." + name[len("downstream_head1."):]
    return name


def _number_setting(kwargs: dict[str, Any], name: str, where: str, integer: bool = True) -> Any:
    """A size setting from the constructor kwargs (CroCoNet's default when absent), type-checked."""
    value = kwargs.get(name, CROCO_CONSTRUCTOR_DEFAULTS[name])
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        shown = value.source if isinstance(value, UnparsedValue) else repr(value)
        raise ValueError(f"{where}: setting {name}={shown} is not {'an integer' if integer else 'a number'}")
    return value


def _backbone_from_kwargs(kwargs: dict[str, Any], where: str) -> CroCoBackboneConfig:
    """Map CroCoNet / AsymmetricCroCo3DStereo constructor settings onto our backbone config."""
    pos_embed = kwargs.get("pos_embed", CROCO_CONSTRUCTOR_DEFAULTS["pos_embed"])
    match = re.fullmatch(r"RoPE(\d+(?:\.\d*)?)", pos_embed) if isinstance(pos_embed, str) else None
    if match is None:
        raise ValueError(
            f"{where}: pos_embed={pos_embed!r} is not supported; Flow4R uses RoPE2D position embeddings "
            "(pos_embed='RoPE100', as in CroCo v2 and DUSt3R). CroCo v1's 'cosine' embeddings (CroCo.pth) cannot "
            "be loaded: use a CroCo v2 checkpoint such as CroCo_V2_ViTLarge_BaseDecoder.pth"
        )
    if kwargs.get("norm_im2_in_dec", True) is not True:
        raise ValueError(f"{where}: norm_im2_in_dec={kwargs['norm_im2_in_dec']!r} is not supported (the decoder "
                         "always normalises the other view's tokens with norm_y)")
    sizes = {name: _number_setting(kwargs, name, where) for name in
             ("enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim", "dec_depth", "dec_num_heads",
              "patch_size")}
    mlp_ratio = float(_number_setting(kwargs, "mlp_ratio", where, integer=False))
    return CroCoBackboneConfig(**sizes, mlp_ratio=mlp_ratio, rope_base=float(match.group(1)))


def _ignored_settings_note(kwargs: dict[str, Any]) -> list[str]:
    notes = []
    ignored = {name: value for name, value in kwargs.items() if name not in _ARCHITECTURE_SETTINGS}
    for name, expected in _EXPECTED_DUST3R_SETTINGS.items():
        value = ignored.pop(name, expected)
        if isinstance(value, list):  # JSON configs hold lists where constructor strings hold tuples
            value = tuple(value)
        if value != expected:
            notes.append(f"the checkpoint's {name}={value!r} differs from Flow4R's post-processing ({expected!r}); "
                         "its head weights were trained for another output")
    if ignored:
        shown = ", ".join(f"{name}={getattr(value, 'source', value)!r}" for name, value in ignored.items())
        notes.append(f"constructor settings that do not change the architecture, ignored: {shown}")
    return notes


def _config_settings_for(backbone: CroCoBackboneConfig) -> dict[str, Any]:
    """``backbone``/``backbone_config`` fields: the preset name when the sizes are a preset's, else explicit."""
    for name, preset in BACKBONE_PRESETS.items():
        if preset == backbone:
            return {"backbone": name, "backbone_config": None}
    return {"backbone": "custom", "backbone_config": backbone}


def _dpt_sizes_from_state(state: dict[str, Tensor], prefix: str) -> dict[str, Any]:
    """DPT widths read from the head's tensor shapes (DUSt3R's constructor does not record them)."""
    reassembly = [state.get(f"{prefix}act_postprocess.{level}.0.weight") for level in range(4)]
    fusion = state.get(f"{prefix}scratch.refinenet1.out_conv.weight")
    last = state.get(f"{prefix}head.2.weight")
    if any(tensor is None for tensor in reassembly) or fusion is None or last is None:
        return {}
    return {"dpt_layer_dims": tuple(int(tensor.shape[0]) for tensor in reassembly),
            "dpt_feature_dim": int(fusion.shape[0]), "dpt_last_dim": int(last.shape[0])}


def _croco_family_checkpoint(
    class_name: str, kwargs: dict[str, Any], state: dict[str, Tensor], where: str, checkpoint_format: str
) -> Checkpoint:
    """A CroCoNet or AsymmetricCroCo3DStereo checkpoint described by its constructor settings."""
    backbone = _backbone_from_kwargs(kwargs, where)
    settings: dict[str, Any] = _config_settings_for(backbone)
    notes = _ignored_settings_note(kwargs)
    if class_name == "CroCoNet":
        key_map = _croco_keys
    elif class_name == "AsymmetricCroCo3DStereo":
        key_map = _dust3r_keys
        head_type = kwargs.get("head_type", "linear")
        if head_type in ("linear", "dpt"):
            settings["head"] = head_type
        else:
            notes.append(f"the checkpoint's head_type={head_type!r} has no Flow4R counterpart; using "
                         f"head={Flow4RConfig.head!r}")
        settings.update(_dpt_sizes_from_state(state, "downstream_head1.dpt."))
    else:
        raise ValueError(f"{where}: model class {class_name!r} is not supported (CroCoNet or "
                         f"AsymmetricCroCo3DStereo); {SUPPORTED_FORMATS_HELP}")
    return Checkpoint(checkpoint_format, Flow4RConfig(**settings), state, key_map, notes)


def _describe_foreign_state_dict(state: dict) -> str:
    keys = sorted(str(key) for key in state)
    if any(key.startswith(("encoder.", "decoder.")) for key in keys) and "patch_embed.proj.weight" not in state:
        return ("it looks like a plain state dict of a DINOv2/π³-style model such as Flow3r's flow3r.bin; "
                "Flow3r's architecture differs from Flow4R's CroCo backbone and factored-flow head, so its weights "
                "cannot be loaded (train the factored-flow head with Flow4RConfig.factored_flow instead)")
    return f"its top-level keys are {keys[:8]}{' …' if len(keys) > 8 else ''}"


def read_pth(path: Path) -> Checkpoint:
    """A CroCo v2 / DUSt3R / CroCo-training ``.pth`` file."""
    content = _torch_load(path)
    if not isinstance(content, dict) or not isinstance(content.get("model"), dict):
        description = _describe_foreign_state_dict(content) if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{path} is not a CroCo/DUSt3R checkpoint (no 'model' state dict): {description}. "
                         f"{SUPPORTED_FORMATS_HELP}")
    state = content["model"]
    if "croco_kwargs" in content:
        kwargs = dict(content["croco_kwargs"] or {})
        return _croco_family_checkpoint("CroCoNet", kwargs, state, f"{path} (croco_kwargs)", "croco")
    args = content.get("args")
    model_string = getattr(args, "model", None)
    if not isinstance(model_string, str):
        raise ValueError(f"{path} has a 'model' state dict but neither 'croco_kwargs' nor 'args.model' describing "
                         f"the architecture; {SUPPORTED_FORMATS_HELP}")
    class_name, kwargs = parse_constructor_call(model_string)
    checkpoint_format = "croco-training" if class_name == "CroCoNet" else "dust3r"
    return _croco_family_checkpoint(class_name, kwargs, state, f"{path} (args.model)", checkpoint_format)


def _load_folder_weights(folder: Path) -> dict[str, Tensor]:
    if (folder / WEIGHTS_NAME).is_file():
        return load_file(str(folder / WEIGHTS_NAME))
    if (folder / PICKLE_WEIGHTS_NAME).is_file():
        return torch.load(folder / PICKLE_WEIGHTS_NAME, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} has {CONFIG_NAME} but neither {WEIGHTS_NAME} nor {PICKLE_WEIGHTS_NAME}; "
                            "copy the weights file next to the config")


def read_folder(folder: Path) -> Checkpoint:
    """A folder written by :func:`save_pretrained` or a DUSt3R Hugging Face folder."""
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        present = sorted(p.name for p in folder.iterdir())[:10]
        raise FileNotFoundError(f"{folder} has no {CONFIG_NAME} (it contains {present}); {SUPPORTED_FORMATS_HELP}")
    settings = json.loads(config_path.read_text())  # Python's json accepts DUSt3R's non-standard Infinity
    if settings.get("model_type") == MODEL_TYPE:
        version = settings.pop("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ValueError(f"{config_path} has format_version {version}, newer than this fourd_ns understands "
                             f"({FORMAT_VERSION}); update fourd_ns")
        settings.pop("model_type")
        return Checkpoint("fourd_ns", Flow4RConfig.from_dict(settings), _load_folder_weights(folder),
                          _identity_keys)
    if "enc_embed_dim" in settings or "head_type" in settings:
        return _croco_family_checkpoint("AsymmetricCroCo3DStereo", settings, _load_folder_weights(folder),
                                        str(config_path), "dust3r-hf")
    raise ValueError(f"{config_path} is neither a fourd_ns Flow4R config (\"model_type\": \"{MODEL_TYPE}\") nor a "
                     f"DUSt3R config (enc_embed_dim, head_type, …); found keys {sorted(settings)}")


def read_checkpoint(path: Path) -> Checkpoint:
    """Read any supported checkpoint at a local ``path`` (folder, ``model.safetensors`` or ``.pth``)."""
    if path.is_dir():
        return read_folder(path)
    if path.suffix == ".safetensors" or path.name == CONFIG_NAME:
        return read_folder(path.parent)
    return read_pth(path)


# ---------------------------------------------------------------------------------------------------------------
# Matching keys


def assign_state_dict(model: Flow4R, checkpoint: Checkpoint, source: str) -> LoadReport:
    """Copy the checkpoint's tensors into ``model`` in place and account for every key."""
    report = LoadReport(source=source, checkpoint_format=checkpoint.checkpoint_format, notes=list(checkpoint.notes))
    targets = model.state_dict(keep_vars=True)
    aliases: dict[int, list[str]] = defaultdict(list)  # tensor identity → every name it is registered under
    for name, tensor in targets.items():
        aliases[id(tensor)].append(name)
    accepted: dict[str, Tensor] = {}
    for key, tensor in checkpoint.state_dict.items():
        mapped = checkpoint.key_map(key)
        if isinstance(mapped, _Unused):
            report.unused[key] = mapped.reason
        elif mapped not in targets:
            report.unused[key] = "no parameter of this name in the model"
        elif tuple(tensor.shape) != tuple(targets[mapped].shape):
            report.shape_mismatched[mapped] = ShapeMismatch(key, tuple(tensor.shape), tuple(targets[mapped].shape))
        else:
            accepted[mapped] = tensor
    filled: set[int] = set()
    with torch.no_grad():
        for names in aliases.values():
            source_name = next((name for name in names if name in accepted), None)
            if source_name is not None:
                targets[names[0]].copy_(accepted[source_name])
                filled.add(id(targets[names[0]]))
    for name, tensor in targets.items():  # in the model's state-dict order
        if id(tensor) in filled:
            report.loaded.append(name)
        elif name not in report.shape_mismatched:
            report.missing.append(name)
    return report


def load_pretrained(
    name_or_path: Union[str, Path],
    *,
    cache_dir: Optional[Union[str, Path]] = None,
    revision: Optional[str] = None,
    config_overrides: Optional[dict[str, Any]] = None,
    strict: bool = False,
) -> tuple[Flow4R, LoadReport]:
    """A Flow4R model with the weights at ``name_or_path`` (see the module docstring) and its :class:`LoadReport`.

    ``config_overrides`` replace settings of the checkpoint's config (e.g. ``{"head": "linear",
    "factored_flow": True}``). ``strict`` raises a ValueError unless every key matches exactly.
    """
    path, source = resolve_weights(name_or_path, cache_dir, revision)
    checkpoint = read_checkpoint(path)
    config = checkpoint.config
    if config_overrides:
        config = Flow4RConfig.from_dict({**config.to_dict(), **config_overrides})
    model = Flow4R(config)
    report = assign_state_dict(model, checkpoint, source)
    if strict and not report.is_exact:
        raise ValueError(f"strict loading of {source} failed:\n{report.summary()}")
    return model, report


def from_pretrained(
    name_or_path: Union[str, Path],
    *,
    cache_dir: Optional[Union[str, Path]] = None,
    revision: Optional[str] = None,
    config_overrides: Optional[dict[str, Any]] = None,
    strict: bool = False,
    console: Optional[Console] = None,
) -> Flow4R:
    """:func:`load_pretrained`, printing the load report with rich (to ``console`` if given)."""
    model, report = load_pretrained(
        name_or_path, cache_dir=cache_dir, revision=revision, config_overrides=config_overrides, strict=strict
    )
    report.print(console)
    return model
