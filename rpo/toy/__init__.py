"""The toy world: programmatic tasks with a known oracle (:mod:`~rpo.toy.world`), its metrics
(:mod:`~rpo.toy.metrics`), the study's training settings (:mod:`~rpo.toy.settings`), one cell of the study
(:mod:`~rpo.toy.study`) and the harnesses run on its policies (:mod:`~rpo.toy.harness`)."""
