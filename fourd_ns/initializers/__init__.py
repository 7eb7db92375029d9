"""Initializers: the seed of a Gaussian model (points, colours, optional velocities and cameras), computed once
before training from the dataset's points, at random, or by a feed-forward reconstruction (Flow4R, Flow3r).

``InitializerConfigUnion`` is the type of ``--pipeline.initializer``: one tyro subcommand per initializer, e.g.
``ns-train deform4d pipeline.initializer:flow4r --pipeline.initializer.weights <checkpoint> nerfies-data --data D``.
"""

from typing import Union

import tyro
from typing_extensions import Annotated

from fourd_ns.initializers.base import Initializer, InitializerConfig, InitializerInputs, InitializerResult
from fourd_ns.initializers.cache import load_or_compute_initialization
from fourd_ns.initializers.dataset_points import DatasetPointsInitializerConfig
from fourd_ns.initializers.feedforward import Flow3rInitializerConfig, Flow4RInitializerConfig
from fourd_ns.initializers.random_points import RandomInitializerConfig

InitializerConfigUnion = Union[
    Annotated[DatasetPointsInitializerConfig, tyro.conf.subcommand("dataset-points")],
    Annotated[RandomInitializerConfig, tyro.conf.subcommand("random")],
    Annotated[Flow4RInitializerConfig, tyro.conf.subcommand("flow4r")],
    Annotated[Flow3rInitializerConfig, tyro.conf.subcommand("flow3r")],
]

__all__ = [
    "DatasetPointsInitializerConfig",
    "Flow3rInitializerConfig",
    "Flow4RInitializerConfig",
    "Initializer",
    "InitializerConfig",
    "InitializerConfigUnion",
    "InitializerInputs",
    "InitializerResult",
    "RandomInitializerConfig",
    "load_or_compute_initialization",
]
