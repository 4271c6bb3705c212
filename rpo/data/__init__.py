"""The data layer: the one preference schema and validator (:mod:`~rpo.data.schema`), annotators and
noise with known truth (:mod:`~rpo.data.noise`), and the paper's dataset loaders (:mod:`~rpo.data.loaders`).
Imports nothing of rpo above the math core."""

from rpo.data.loaders import UF_COLUMNS, ULTRAFEEDBACK, load_ultrafeedback, normalize_ultrafeedback
from rpo.data.noise import (
    Annotator,
    annotate,
    annotator_pool,
    apply_layout,
    bt_tau_for_rate,
    pool_reliabilities,
    single_annotator,
    true_reliability,
    two_annotators,
)
from rpo.data.schema import (
    HIDDEN_COLUMNS,
    HIDDEN_PREFIX,
    REQUIRED,
    VIRTUAL_ANNOTATOR,
    annotator_ids,
    identical_rows,
    is_hidden,
    public_view,
    validate_preferences,
)

__all__ = [
    "Annotator",
    "HIDDEN_COLUMNS",
    "HIDDEN_PREFIX",
    "REQUIRED",
    "UF_COLUMNS",
    "ULTRAFEEDBACK",
    "VIRTUAL_ANNOTATOR",
    "annotate",
    "annotator_ids",
    "annotator_pool",
    "apply_layout",
    "bt_tau_for_rate",
    "identical_rows",
    "is_hidden",
    "load_ultrafeedback",
    "normalize_ultrafeedback",
    "pool_reliabilities",
    "public_view",
    "single_annotator",
    "true_reliability",
    "two_annotators",
    "validate_preferences",
]
