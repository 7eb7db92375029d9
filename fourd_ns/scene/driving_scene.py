"""A driving scene as named parts of Gaussian state, composed into one world-space Gaussian set at a time.

G3R decomposes a driving log into a static background, rigid actors (each a Gaussian set in its box frame, moved
by its annotated box poses) and a distant region (sky, far buildings), and updates each with its own network. So
the scene keeps each part's state as its own tensor under a stable name, in a stable order:

- ``"background"``: state [Nb, C] in world coordinates;
- ``"actor/<track_id>"``: state [Na, C] in the actor's box frame, with its `ActorTrack`, one per actor in the order
  given (an actor may have no Gaussians);
- ``"far"`` (optional): state [Ns, C] in world coordinates.

The state's meaning is the caller's: `scene_at` takes a ``decode(kind, state) -> GaussianParams`` (G3R's neural
decoder per kind, a Flux4D motion model closing over the time, plain activations) and only moves actor parts into
the world (`fourd_ns.scene.rigid_actors`). Scenes are immutable: `with_states` returns a new scene whose states are
the given tensors themselves (no copy, no detach), so a learned optimizer's update ``S + γ Δ`` stays differentiable
and the old scene is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from fourd_ns.scene.gaussian_params import GaussianParams
from fourd_ns.scene.rigid_actors import actor_pose_at, transform_gaussians
from fourd_ns.sensors.actor_tracks import ActorTrack

PartKind = Literal["background", "actor", "far"]
BACKGROUND = "background"
FAR = "far"
ACTOR_PREFIX = "actor/"

Decode = Callable[[PartKind, Float[Tensor, "N C"]], GaussianParams]
"""Turns one part's state into activated Gaussians in that part's own frame (box frame for actors)."""


def actor_part_name(track_id: str) -> str:
    return ACTOR_PREFIX + track_id


def part_kind(name: str) -> PartKind:
    """The kind of a part from its name."""
    if name == BACKGROUND:
        return "background"
    if name == FAR:
        return "far"
    if name.startswith(ACTOR_PREFIX):
        return "actor"
    raise ValueError(f"'{name}' is not a driving-scene part name ('{BACKGROUND}', '{FAR}' or '{ACTOR_PREFIX}<id>')")


@dataclass(frozen=True)
class DrivingScene:
    """Parts of a driving scene; build with `DrivingScene.from_parts`."""

    states: Dict[str, Float[Tensor, "N C"]]
    """Part name -> state, in composition order (background, actors, far)."""
    tracks: Dict[str, ActorTrack] = field(default_factory=dict)
    """Actor part name -> its track."""
    actor_hold_time: float = 0.0
    """Normalised time an actor keeps its first / last box pose beyond its annotations (see `actor_pose_at`;
    `fourd_ns.scene.rigid_actors.frame_hold_time` keeps actors in all images of their annotated frames)."""

    def __post_init__(self) -> None:
        for name, state in self.states.items():
            part_kind(name)
            if state.dim() != 2:
                raise ValueError(f"Part '{name}' has a state of shape {tuple(state.shape)}; expected [N, C]")
        actors = [name for name in self.states if part_kind(name) == "actor"]
        if sorted(actors) != sorted(self.tracks):
            raise ValueError(f"Actor parts {actors} and tracks {list(self.tracks)} do not match")

    @staticmethod
    def from_parts(
        background: Float[Tensor, "Nb C"],
        actors: Sequence[Tuple[ActorTrack, Float[Tensor, "Na C"]]] = (),
        far: Optional[Float[Tensor, "Ns C"]] = None,
        actor_hold_time: float = 0.0,
    ) -> "DrivingScene":
        """A scene from its background state, (track, box-frame state) per actor and an optional far-field state."""
        states: Dict[str, Tensor] = {BACKGROUND: background}
        tracks: Dict[str, ActorTrack] = {}
        for track, state in actors:
            name = actor_part_name(track.track_id)
            if name in states:
                raise ValueError(f"Actor track '{track.track_id}' is given twice")
            states[name], tracks[name] = state, track
        if far is not None:
            states[FAR] = far
        return DrivingScene(states=states, tracks=tracks, actor_hold_time=actor_hold_time)

    @property
    def kinds(self) -> Dict[str, PartKind]:
        """Part name -> kind, in composition order."""
        return {name: part_kind(name) for name in self.states}

    def names_of(self, kind: PartKind) -> List[str]:
        return [name for name in self.states if part_kind(name) == kind]

    @property
    def num_gaussians(self) -> int:
        return sum(int(state.shape[0]) for state in self.states.values())

    def with_states(self, new_states: Mapping[str, Float[Tensor, "N C"]]) -> "DrivingScene":
        """A scene with some parts' states replaced by the given tensors (as they are: no copy, no detach); the
        other parts keep theirs. A replacement keeps its part's channel count."""
        unknown = [name for name in new_states if name not in self.states]
        if unknown:
            raise KeyError(f"with_states got unknown parts {unknown}; the scene has {list(self.states)}")
        for name, state in new_states.items():
            if state.dim() != 2 or state.shape[1] != self.states[name].shape[1]:
                raise ValueError(
                    f"with_states: part '{name}' has {self.states[name].shape[1]} channels; got shape "
                    f"{tuple(state.shape)}"
                )
        states = {name: new_states.get(name, state) for name, state in self.states.items()}
        return DrivingScene(states=states, tracks=self.tracks, actor_hold_time=self.actor_hold_time)

    def to(self, device: torch.device | str) -> "DrivingScene":
        return self.with_states({name: state.to(device) for name, state in self.states.items()})

    def actor_poses_at(self, time: float) -> Dict[str, Optional[Float[Tensor, "4 4"]]]:
        """Box -> world pose of every actor part at ``time`` (None where the actor is absent)."""
        return {name: actor_pose_at(track, time, self.actor_hold_time) for name, track in self.tracks.items()}

    def parts_at(self, time: float, decode: Decode) -> Dict[str, GaussianParams]:
        """Each present, non-empty part decoded and in world coordinates at ``time``, in composition order; actors
        absent at ``time`` and parts without Gaussians are left out."""
        poses = self.actor_poses_at(time)
        parts: Dict[str, GaussianParams] = {}
        for name, state in self.states.items():
            kind = part_kind(name)
            if state.shape[0] == 0 or (kind == "actor" and poses[name] is None):
                continue
            params = decode(kind, state)
            parts[name] = transform_gaussians(params, poses[name]) if kind == "actor" else params
        return parts

    def scene_at(self, time: float, decode: Decode) -> GaussianParams:
        """All Gaussians present at ``time`` in world coordinates (the parts of `parts_at`, concatenated)."""
        parts = list(self.parts_at(time, decode).values())
        if not parts:
            background = self.states[BACKGROUND]
            return GaussianParams.empty(background.device, background.dtype)
        return GaussianParams.cat(parts)
