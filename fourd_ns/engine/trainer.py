"""nerfstudio's ``Trainer``, telling the pipeline where the run's output folder is before building it, and writing
nothing into that folder before the dataset has been read.

Only the trainer knows the run folder (``trainer.base_dir``: output_dir/experiment/method/timestamp), but the
pipeline needs it earlier than any callback: the initializer runs before the model exists and caches its result
there. :class:`FourDTrainer` therefore sets ``pipeline.run_dir`` on the config just before ``Trainer.setup`` builds
the pipeline. A ``run_dir`` found in a loaded config is overwritten by the new run's folder, and
``ns-eval``/``ns-viewer`` build pipelines without a trainer and never run the initializer, so a recorded folder is
never used again.

``ns-train`` (nerfstudio's ``train.py`` ``main``) calls ``config.save_config()`` before it builds the trainer, so a
``--data`` folder the dataparser refuses (say a PandaSet log given to the default ``nerfies-data``) used to leave a
run folder holding only ``config.yml``. :meth:`FourDTrainerConfig.save_config` therefore writes nothing and
:class:`FourDTrainer` writes ``config.yml`` once ``Trainer.setup`` has built the pipeline, whose datamanager runs the
dataparser first. A :class:`~fourd_ns.dataparsers.dataset_layouts.WrongDataparserError` from the dataparser gets the
method's name in its suggested command.

A model config with ``total_iterations()`` (g3r: learned steps + fine-tuning) sets the run's length itself, before
and again after the pipeline is built (flux4d's pipeline reads its refinement iterations from the weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Type

from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils import comms
from nerfstudio.utils.rich_utils import CONSOLE

from fourd_ns.dataparsers.dataset_layouts import WrongDataparserError


@dataclass
class FourDTrainerConfig(TrainerConfig):
    """nerfstudio's trainer settings; the trainer it builds hands the run folder to the pipeline."""

    _target: Type = field(default_factory=lambda: FourDTrainer)

    def save_config(self) -> None:
        """Write nothing yet: ``ns-train`` calls this before any data is read; :class:`FourDTrainer` writes
        ``config.yml`` (:meth:`write_config`) once the dataparser has read the dataset."""
        CONSOLE.log(f"config.yml is written to {self.get_base_dir()} once the dataset has been read")

    def write_config(self) -> None:
        """Write ``config.yml`` into the run folder now (nerfstudio's ``TrainerConfig.save_config``)."""
        super().save_config()


class FourDTrainer(Trainer):
    """``Trainer`` that sets ``config.pipeline.run_dir`` to the run folder before building the pipeline and writes
    ``config.yml`` after it."""

    config: FourDTrainerConfig

    def setup(self, test_mode: Literal["test", "val", "inference"] = "val") -> None:
        if hasattr(self.config.pipeline, "run_dir"):
            self.config.pipeline.run_dir = self.base_dir
        total_iterations = getattr(self.config.pipeline.model, "total_iterations", None)
        if callable(total_iterations) and self.config.max_num_iterations != total_iterations():
            CONSOLE.log(f"{self.config.method_name}: {total_iterations()} iterations (its steps and fine-tuning "
                        f"set the run's length; --max-num-iterations {self.config.max_num_iterations} is ignored)")
            self.config.max_num_iterations = total_iterations()
        try:
            super().setup(test_mode)
        except WrongDataparserError as error:
            raise error.for_method(self.config.method_name) from None
        # A pipeline may settle the length from its weights while it builds the model (flux4d: refinement
        # iterations as trained); the training loop reads max_num_iterations only after setup.
        if callable(total_iterations) and self.config.max_num_iterations != total_iterations():
            CONSOLE.log(f"{self.config.method_name}: {total_iterations()} iterations (set by the trained weights)")
            self.config.max_num_iterations = total_iterations()
        if comms.is_main_process():
            self.config.write_config()
