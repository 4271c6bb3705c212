"""The TRL layer, the only package that imports trl: :class:`RobustConfig`, :class:`RobustTrainer`, the
forward, the collator, every TRL workaround (:mod:`~rpo.training.compat`), the cluster launch script
(``python -m rpo.training.launch``) and the recipes parser."""

from rpo.core.losses import LOSSES
from rpo.training.collator import ANNOTATOR_ID, RobustCollator
from rpo.training.compat import TESTED_TRL_VERSION
from rpo.training.config import RobustConfig
from rpo.training.trainer import RobustTrainer

__all__ = ["ANNOTATOR_ID", "LOSSES", "RobustCollator", "RobustConfig", "RobustTrainer", "TESTED_TRL_VERSION"]
