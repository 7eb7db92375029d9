"""A time-deformable Gaussian model: canonical Gaussians moved to the camera's time by a deformation field.

The class subclasses nerfstudio's ``SplatfactoModel`` so that everything keyed on ``isinstance(model,
SplatfactoModel)`` keeps working (viewer background/depth handling and export panel, ``ns-export gaussian-splat``),
and so that its checkpoint resizing, gsplat ``DefaultStrategy`` wiring, losses and metrics are inherited. What changes:

* ``populate_modules`` is rewritten: no ``.cuda()``, no eager LPIPS download (:class:`~fourd_ns.metrics.lpips.LazyLPIPS`),
  identity or random initial rotations, and a deformation network built by the subclass.
* ``get_outputs`` reads ``camera.times``, deforms the canonical set (after a static warm-up, optionally with the
  annealed time noise of Deformable-3DGS) and rasterizes through :func:`fourd_ns.gaussians.rasterize.rasterize`
  (gsplat on CUDA, our tile rasterizer on CPU).
* ``step_cb`` re-binds optimizers to the live parameters after a checkpoint load, which fixes resuming
  (nerfstudio builds optimizers before loading the checkpoint that replaces every Gaussian parameter).
* Evaluation (image metrics, dynamic-region error sums, LiDAR depth errors) comes from
  `fourd_ns.models.image_metrics`; ``lidar_depth_loss_weight`` adds an L1 LiDAR depth term on the rendered "ED"
  depth.
* ``depth_weight`` adds FLAG-4D's Eq. 9 depth term (`fourd_ns.deformation.flag4d_losses.depth_loss`, scale-free:
  both depths min–max normalised over the pixels with a prior) against the dataset's own depth maps
  (``metadata["depth_filenames"]``, which the datamanager's `fourd_ns.datasets.depth_prior_dataset` puts in the batch
  as ``depth_image``). It lives here, not in flag4d, so that deform4d can get exactly the same supervision in a
  comparison; deform4d's default is 0 (Deformable-3DGS has no depth term), flag4d's 1 (the paper's Eq. 12). It is
  applied once the deformation field is on: during the static warm-up a static scene cannot match the depth of
  moving objects, and this is what flag4d always did.
* ``means``/``quats``/``scales`` read by ``ns-export gaussian-splat`` are the canonical set unless an export time is
  chosen (``export_time`` in the config or the ``FOURD_EXPORT_TIME`` environment variable); the log says which.

Subclasses implement :meth:`DeformableSplatfactoModel.deformation_at` and :meth:`deformation_param_groups`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Type, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from pytorch_msssim import SSIM
from torch import Tensor
from torch.nn import Parameter

from gsplat.strategy import DefaultStrategy
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.models.splatfacto import (
    RGB2SH,
    SplatfactoModel,
    SplatfactoModelConfig,
    num_sh_bases,
    random_quat_tensor,
)
from nerfstudio.utils.colors import get_color
from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.deformation.flag4d_losses import depth_loss
from fourd_ns.deformation.mlp_field import Deformation
from fourd_ns.gaussians.gaussian_state import GaussianState
from fourd_ns.gaussians.rasterize import rasterize
from fourd_ns.geometry.camera_conventions import camera_time, viewmat_from_nerfstudio_c2w
from fourd_ns.metrics.lpips import LazyLPIPS
from fourd_ns.models.image_metrics import EXPORT_TIME_ENV, GaussianImageMetrics, chosen_export_time


def time_column(means: Float[Tensor, "N 3"], time: float) -> Float[Tensor, "N 1"]:
    """``time`` repeated for every Gaussian: the time input of a per-Gaussian deformation network."""
    return torch.full((means.shape[0], 1), time, device=means.device, dtype=means.dtype)


@dataclass
class DeformableSplatfactoModelConfig(SplatfactoModelConfig):
    """Canonical 3D Gaussians plus a time-dependent deformation field (the base of every fourd_ns 4D method)."""

    _target: Type = field(default_factory=lambda: DeformableSplatfactoModel)
    static_warmup_steps: int = 3000
    """Iterations trained as a static 3DGS scene before the deformation field is switched on."""
    annealed_time_noise: bool = True
    """Add the annealed smooth-training (AST) noise of Deformable-3DGS to the time input during training."""
    time_noise_scale: float = 0.1
    """Initial AST amplitude, in units of the spacing between training frames; it decays linearly to zero."""
    time_noise_steps: int = 20000
    """Iterations over which the AST amplitude decays to zero."""
    init_rotations: Literal["identity", "random"] = "identity"
    """Initial Gaussian rotations: identity (3DGS / Deformable-3DGS) or random (splatfacto)."""
    init_opacity: float = 0.1
    """Initial opacity of every Gaussian."""
    scene_scale: float = 1.0
    """Scene extent that the densification size thresholds are relative to (gsplat DefaultStrategy scene_scale)."""
    lpips_net: Literal["alex", "vgg", "squeeze"] = "alex"
    """LPIPS backbone for evaluation; it is only used when its weights are present locally (never downloaded)."""
    export_time: Optional[float] = None
    """Time in [0, 1] at which `ns-export gaussian-splat` writes the Gaussians; None writes the canonical set.
    The FOURD_EXPORT_TIME environment variable overrides it."""
    use_absgrad: bool = False
    """Densify from absolute 2D gradients (both backends provide them); Deformable-3DGS uses plain gradients."""
    num_downscales: int = 0
    """Train at 1/2^d resolution at first, doubling every `resolution_schedule` steps (0: full resolution)."""
    background_color: Literal["random", "black", "white"] = "black"
    """Background composited behind the Gaussians."""
    lidar_depth_loss_weight: float = 0.0
    """Weight of an L1 loss between the rendered z-depth and the LiDAR depth, in scene units, on the pixels with a
    LiDAR return (driving datasets with LiDAR only); 0 turns it off."""
    depth_weight: float = 0.0
    """Weight of FLAG-4D's depth loss (Eq. 9, min–max normalised L1) against the dataset's depth maps, after the
    static warm-up; used only when the dataset lists depth maps (the log says whether it is on); 0 turns it off."""


class DeformableSplatfactoModel(GaussianImageMetrics, SplatfactoModel, abc.ABC):
    """Splatfacto with canonical Gaussians deformed to the time of each camera (abstract: subclasses supply the field)."""

    config: DeformableSplatfactoModelConfig
    method_label = "deformable splatfacto"
    """The method's name in log lines (subclasses set their ns-train name)."""

    # ---------------------------------------------------------------- construction
    def populate_modules(self) -> None:
        means = self._initial_means()
        num_points = means.shape[0]
        scales = torch.log(self._nearest_neighbour_scale(means)).repeat(1, 3)
        if self.config.init_rotations == "identity":
            quats = torch.zeros(num_points, 4)
            quats[:, 0] = 1.0
        else:
            quats = random_quat_tensor(num_points)
        dim_sh = num_sh_bases(self.config.sh_degree)
        features_dc, features_rest = self._initial_features(num_points, dim_sh)
        opacities = torch.logit(torch.full((num_points, 1), self.config.init_opacity))
        self.gauss_params = torch.nn.ParameterDict(
            {
                "means": Parameter(means),
                "scales": Parameter(scales),
                "quats": Parameter(quats),
                "features_dc": Parameter(features_dc),
                "features_rest": Parameter(features_rest),
                "opacities": Parameter(opacities),
            }
        )
        self.camera_optimizer = self.config.camera_optimizer.setup(num_cameras=self.num_train_data, device="cpu")

        from torchmetrics.image import PeakSignalNoiseRatio

        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = SSIM(data_range=1.0, size_average=True, channel=3)
        self.lpips_metric = LazyLPIPS(self.config.lpips_net)
        self.step = 0
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}
        self.crop_box: Optional[OrientedBox] = None
        if self.config.background_color == "random":
            self.background_color = torch.tensor([0.1490, 0.1647, 0.2157])  # viser's background, used outside training
        else:
            self.background_color = get_color(self.config.background_color)
        # Saved with the checkpoint so evaluation of an early checkpoint does not apply an untrained field.
        self.register_buffer("deformation_enabled", torch.tensor(False))
        self._export_time_logged = False
        self._export_cache: Optional[tuple] = None

        self.strategy = DefaultStrategy(
            prune_opa=self.config.cull_alpha_thresh,
            grow_grad2d=self.config.densify_grad_thresh,
            grow_scale3d=self.config.densify_size_thresh,
            grow_scale2d=self.config.split_screen_size,
            prune_scale3d=self.config.cull_scale_thresh,
            prune_scale2d=self.config.cull_screen_size,
            refine_scale2d_stop_iter=self.config.stop_screen_size_at,
            refine_start_iter=self.config.warmup_length,
            refine_stop_iter=self.config.stop_split_at,
            reset_every=self.config.reset_alpha_every * self.config.refine_every,
            refine_every=self.config.refine_every,
            pause_refine_after_reset=self.num_train_data + self.config.refine_every,
            absgrad=self.config.use_absgrad,
            revised_opacity=False,
            verbose=True,
        )
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.config.scene_scale)
        metadata = self.kwargs.get("metadata") or {}
        self.uses_depth_prior = self.config.depth_weight > 0 and "depth_filenames" in metadata
        if self.config.depth_weight > 0:
            CONSOLE.log(
                f"{self.method_label}: depth loss on (the dataset's depth maps are the prior)."
                if self.uses_depth_prior
                else f"{self.method_label}: the dataset has no depth maps: the depth loss is off."
            )
        self.populate_deformation()

    @abc.abstractmethod
    def populate_deformation(self) -> None:
        """Build the deformation network(s); called at the end of ``populate_modules``."""

    def _initial_means(self) -> Float[Tensor, "N 3"]:
        if self.seed_points is not None and not self.config.random_init and self.seed_points[0].shape[0] > 0:
            return self.seed_points[0].detach().float().cpu().clone()
        if self.seed_points is not None and not self.config.random_init:
            CONSOLE.print("[bold yellow]The dataset has no seed points; initialising Gaussians uniformly at random.")
        return (torch.rand(self.config.num_random, 3) - 0.5) * self.config.random_scale

    def _nearest_neighbour_scale(self, means: Float[Tensor, "N 3"]) -> Float[Tensor, "N 1"]:
        """√(mean squared distance to the 3 nearest neighbours), the 3DGS initial scale."""
        if means.shape[0] < 4:
            return torch.full((means.shape[0], 1), 0.01)
        distances, _ = self.k_nearest_sklearn(means, 3)
        mean_sq = torch.from_numpy(distances).square().mean(dim=-1, keepdim=True)
        return mean_sq.sqrt().clamp_min(1e-7)

    def _initial_features(self, num_points: int, dim_sh: int) -> tuple[Tensor, Tensor]:
        colors = self.seed_points[1] if self.seed_points is not None and not self.config.random_init else None
        if colors is not None and colors.shape[0] == num_points:
            rgb = colors.detach().float().cpu() / 255.0
            if self.config.sh_degree > 0:
                features_dc = RGB2SH(rgb)
            else:
                features_dc = torch.logit(rgb, eps=1e-10)
        else:
            features_dc = torch.rand(num_points, 3)
        return features_dc, torch.zeros(num_points, dim_sh - 1, 3)

    # ---------------------------------------------------------------- parameters
    @abc.abstractmethod
    def deformation_param_groups(self) -> Dict[str, List[Parameter]]:
        """Parameter groups of the deformation network(s); each needs an optimizer entry in the method config."""

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = super().get_param_groups()
        groups.update(self.deformation_param_groups())
        return groups

    def step_cb(self, optimizers: Optimizers, step: int) -> None:
        self._rebind_optimizers(optimizers)
        super().step_cb(optimizers, step)

    def _rebind_optimizers(self, optimizers: Optimizers) -> None:
        """Point each Gaussian optimizer at the live parameter, carrying its state over.

        ``SplatfactoModel.load_state_dict`` replaces every ``gauss_params`` entry with a new Parameter after the
        trainer has already built the optimizers, so on resume they would update orphans and densification would
        index state of the wrong size.
        """
        for name, param in self.gauss_params.items():
            optimizer = optimizers.optimizers.get(name)
            if optimizer is None:
                continue
            group = optimizer.param_groups[0]
            stale = group["params"][0]
            if stale is param:
                continue
            state = optimizer.state.pop(stale, None)
            if state is not None and all(
                not torch.is_tensor(v) or v.dim() == 0 or v.shape == param.shape for v in state.values()
            ):
                optimizer.state[param] = state
            group["params"] = [param]
            optimizers.parameters[name] = [param]

    # ---------------------------------------------------------------- deformation
    @abc.abstractmethod
    def deformation_at(self, canonical: GaussianState, time: float, time_noise: float) -> Deformation:
        """Offsets of the ``canonical`` Gaussians at ``time`` (the subclass's deformation field).

        ``time_noise`` is this iteration's annealed smooth-training noise (0 outside training); fields add it to the
        time they are queried at.
        """

    def deformation_active(self) -> bool:
        if self.training:
            active = self.step >= self.config.static_warmup_steps
            if active and not bool(self.deformation_enabled):
                self.deformation_enabled.fill_(True)
            return active
        return bool(self.deformation_enabled)

    def training_time_noise(self) -> float:
        """Annealed smooth-training noise (Deformable-3DGS AST): one N(0, 1) scalar per iteration.

        Its amplitude is ``time_noise_scale`` × (spacing of training frames), decaying linearly to zero over
        ``time_noise_steps`` iterations.
        """
        if not (self.training and self.config.annealed_time_noise):
            return 0.0
        decay = max(0.0, 1.0 - self.step / max(self.config.time_noise_steps, 1))
        interval = 1.0 / max(self.num_train_data, 1)
        return float(torch.randn(()).item()) * interval * self.config.time_noise_scale * decay

    def canonical_gaussians(self) -> GaussianState:
        return GaussianState(
            means=self.gauss_params["means"],
            quats=self.gauss_params["quats"] / self.gauss_params["quats"].norm(dim=-1, keepdim=True),
            scales=torch.exp(self.gauss_params["scales"]),
            opacities=torch.sigmoid(self.gauss_params["opacities"]).squeeze(-1),
            features=torch.cat([self.gauss_params["features_dc"][:, None, :], self.gauss_params["features_rest"]], 1),
        )

    def gaussians_at(self, time: float, rows: Optional[Tensor] = None) -> GaussianState:
        """The Gaussians at ``time`` in [0, 1]: canonical plus the field's offsets (Deformable-3DGS composition).

        Position offsets are added to the means, rotation offsets to the *normalised* quaternion and scale offsets
        to the *activated* scales, as in Deformable-3DGS; optional opacity/colour offsets are added to the logits /
        DC coefficients. ``rows`` deforms only those Gaussians (the fields are per-Gaussian, so the result equals
        selecting them from the whole set).
        """
        canonical = self.canonical_gaussians()
        if rows is not None:
            canonical = canonical.select(rows)
        if not self.deformation_active():
            return canonical
        offsets = self.deformation_at(canonical, time, self.training_time_noise())
        opacities = canonical.opacities
        if offsets.d_opacities is not None:
            logits = self.gauss_params["opacities"] if rows is None else self.gauss_params["opacities"][rows]
            opacities = torch.sigmoid(logits + offsets.d_opacities).squeeze(-1)
        features = canonical.features
        if offsets.d_colors is not None:
            features = torch.cat([features[:, :1] + offsets.d_colors[:, None, :], features[:, 1:]], dim=1)
        return GaussianState(
            means=canonical.means + offsets.d_means,
            quats=canonical.quats + offsets.d_quats,
            scales=canonical.scales + offsets.d_scales,
            opacities=opacities,
            features=features,
        )

    # ---------------------------------------------------------------- rendering
    def renders_depth_in_training(self) -> bool:
        """Whether training renders depth too (for a depth loss, or when the config asks for it)."""
        return (
            self.config.output_depth_during_training or self.config.lidar_depth_loss_weight > 0 or self.uses_depth_prior
        )

    camera_time = staticmethod(camera_time)

    def get_outputs(self, camera: Cameras) -> Dict[str, Union[torch.Tensor, List]]:
        if not isinstance(camera, Cameras):
            CONSOLE.print("[bold red]get_outputs expects a Cameras object")
            return {}
        if self.training:
            assert camera.shape[0] == 1, "Only one camera at a time"
            camera_to_world = self.camera_optimizer.apply_to_camera(camera)
        else:
            camera_to_world = camera.camera_to_worlds

        gaussians = self.gaussians_at(self.camera_time(camera))
        if self.crop_box is not None and not self.training:
            inside = self.crop_box.within(gaussians.means).squeeze()
            if inside.sum() == 0:
                return self.get_empty_outputs(int(camera.width.item()), int(camera.height.item()), self.background_color)
            gaussians = gaussians.select(inside)

        downscale = self._get_downscale_factor()
        camera.rescale_output_resolution(1 / downscale)
        viewmat = viewmat_from_nerfstudio_c2w(camera_to_world)
        K = camera.get_intrinsics_matrices().to(self.device)
        W, H = int(camera.width.item()), int(camera.height.item())
        self.last_size = (H, W)
        camera.rescale_output_resolution(downscale)

        render_mode = "RGB+ED" if (self.renders_depth_in_training() or not self.training) else "RGB"
        if self.config.sh_degree > 0:
            sh_degree: Optional[int] = min(self.step // self.config.sh_degree_interval, self.config.sh_degree)
            colors = gaussians.features
        else:
            sh_degree = None
            colors = torch.sigmoid(gaussians.features[:, 0, :])

        render, alpha, self.info = rasterize(
            means=gaussians.means,
            quats=gaussians.quats,
            scales=gaussians.scales,
            opacities=gaussians.opacities,
            colors=colors,
            viewmats=viewmat,
            Ks=K,
            width=W,
            height=H,
            near_plane=0.01,
            far_plane=1e10,
            sh_degree=sh_degree,
            render_mode=render_mode,
            rasterize_mode=self.config.rasterize_mode,
            absgrad=self.strategy.absgrad,
            packed=False,
        )
        if self.training:
            self.strategy.step_pre_backward(self.gauss_params, self.optimizers, self.strategy_state, self.step, self.info)

        background = self._get_background_color()
        rgb = torch.clamp(render[..., :3] + (1 - alpha) * background, 0.0, 1.0)
        depth = None
        if render_mode == "RGB+ED":
            depth = torch.where(alpha > 0, render[..., 3:4], render[..., 3:4].detach().max()).squeeze(0)
        if background.shape[0] == 3 and not self.training:
            background = background.expand(H, W, 3)
        return {"rgb": rgb.squeeze(0), "depth": depth, "accumulation": alpha.squeeze(0), "background": background}

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        losses = super().get_loss_dict(outputs, batch, metrics_dict)
        depth = outputs.get("depth")
        if self.config.lidar_depth_loss_weight > 0 and "lidar_depth" in batch and depth is not None:
            losses["lidar_depth_loss"] = self.config.lidar_depth_loss_weight * self.lidar_depth_l1(depth, batch)
        if (
            self.uses_depth_prior
            and self.training
            and self.deformation_active()
            and depth is not None
            and "depth_image" in batch
        ):
            losses["depth_loss"] = self.depth_prior_loss(depth, batch["depth_image"])
        return losses

    def depth_prior_loss(self, rendered: Float[Tensor, "H W 1"], prior: Float[Tensor, "h w 1"]) -> Tensor:
        """Eq. 9 between the rendered depth and the dataset's depth map (0 = unknown, masked out), the map resized
        to the render with nearest-neighbour sampling (coarse-to-fine training renders at 1/2^d)."""
        prior = prior.to(rendered)
        if prior.shape[:2] != rendered.shape[:2]:
            prior = F.interpolate(prior.permute(2, 0, 1)[None], size=rendered.shape[:2], mode="nearest")
            prior = prior[0].permute(1, 2, 0)
        return depth_loss(rendered, prior, prior > 0, self.config.depth_weight)

    # ---------------------------------------------------------------- export
    def export_time(self) -> Optional[float]:
        """The time `ns-export` should write: FOURD_EXPORT_TIME, else the config's export_time, else None."""
        return chosen_export_time(self.config.export_time)

    def _exported(self) -> Optional[GaussianState]:
        """Deformed Gaussians for external readers (ns-export) when an export time is chosen, else None."""
        if self.training:
            return None
        time = self.export_time()
        if not self._export_time_logged:
            self._export_time_logged = True
            if time is None:
                CONSOLE.print(
                    "[bold]fourd_ns: exporting the canonical (time-independent) Gaussians; set "
                    f"{EXPORT_TIME_ENV}=t (t in [0, 1]) to export the scene deformed to time t."
                )
            else:
                CONSOLE.print(f"[bold]fourd_ns: exporting the Gaussians deformed to time t={time}.")
        if time is None:
            return None
        key = (time, self.num_points)
        if self._export_cache is None or self._export_cache[0] != key:
            with torch.no_grad():
                self._export_cache = (key, self.gaussians_at(time))
        return self._export_cache[1]

    @property
    def means(self):
        exported = self._exported()
        return self.gauss_params["means"] if exported is None else exported.means

    @property
    def quats(self):
        exported = self._exported()
        return self.gauss_params["quats"] if exported is None else exported.quats

    @property
    def scales(self):
        exported = self._exported()
        return self.gauss_params["scales"] if exported is None else torch.log(exported.scales.abs().clamp_min(1e-12))

    @property
    def opacities(self):
        exported = self._exported()
        if exported is None:
            return self.gauss_params["opacities"]
        return torch.logit(exported.opacities.clamp(1e-6, 1 - 1e-6))[:, None]

    @property
    def features_dc(self):
        exported = self._exported()
        return self.gauss_params["features_dc"] if exported is None else exported.features[:, 0, :]

    @property
    def num_points(self) -> int:
        return self.gauss_params["means"].shape[0]
