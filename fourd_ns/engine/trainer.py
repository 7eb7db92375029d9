"""nerfstudio's ``Trainer``, telling the pipeline where the run's output folder is before building it.

Only the trainer knows the run folder (``trainer.base_dir``: output_dir/experiment/method/timestamp), but the
pipeline needs it earlier than any callback: the initializer runs before the model exists and caches its result
there. :class:`FourDTrainer` therefore sets ``pipeline.run_dir`` on the config just before ``Trainer.setup`` builds
the pipeline. ``ns-train`` saves ``config.yml`` before that; a ``run_dir`` found in a loaded config is overwritten
by the new run's folder, and ``ns-eval``/``ns-viewer`` build pipelines without a trainer and never run the
initializer, so a recorded folder is never used again.

A model config with ``total_iterations()`` (g3r: learned steps + fine-tuning) sets the run's length itself, before
and again after the pipeline is built (flux4d's pipeline reads its refinement iterations from the weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Type

from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.rich_utils import CONSOLE


@dataclass
class FourDTrainerConfig(TrainerConfig):
    """nerfstudio's trainer settings; the trainer it builds hands the run folder to the pipeline."""

    _target: Type = field(default_factory=lambda: FourDTrainer)


class FourDTrainer(Trainer):
    """``Trainer`` that sets ``config.pipeline.run_dir`` to the run folder before building the pipeline."""

    config: FourDTrainerConfig

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        if hasattr(self.config.pipeline, "run_dir"):
            self.config.pipeline.run_dir = self.base_dir
        total_iterations = getattr(self.config.pipeline.model, "total_iterations", None)
        if callable(total_iterations) and self.config.max_num_iterations != total_iterations():
            CONSOLE.log(f"{self.config.method_name}: {total_iterations()} iterations (its steps and fine-tuning "
                        f"set the run's length; --max-num-iterations {self.config.max_num_iterations} is ignored)")
            self.config.max_num_iterations = total_iterations()
        super().setup(test_mode)
        # A pipeline may settle the length from its weights while it builds the model (flux4d: refinement
        # iterations as trained); the training loop reads max_num_iterations only after setup.
        if callable(total_iterations) and self.config.max_num_iterations != total_iterations():
            CONSOLE.log(f"{self.config.method_name}: {total_iterations()} iterations (set by the trained weights)")
            self.config.max_num_iterations = total_iterations()
