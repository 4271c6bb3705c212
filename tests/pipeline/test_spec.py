"""rpo.pipeline.spec: a training config's validation."""

from __future__ import annotations

import pytest

from rpo.pipeline.spec import DEFAULTS, TOY_ONLY, config


def test_pool_layout_needs_its_annotator_count_and_no_injected_rate():
    cfg = config(layout="pool", annotators=32, noise=0.0)
    assert cfg["annotators"] == 32 and config()["annotators"] is None
    for bad, match in (
        (dict(layout="pool", noise=0.0), "goes with layout 'pool'"),  # K missing
        (dict(annotators=8), "goes with layout 'pool'"),  # K without the pool
        (dict(layout="pool", annotators=8, noise=0.2), "noise 0"),  # the pool draws each rate
        (dict(layout="pool", annotators=0, noise=0.0), "1..256"),
        (dict(layout="pool", annotators=257, noise=0.0), "1..256"),
        (dict(layout="pool", annotators=True, noise=0.0), "1..256"),
        (dict(layout="pool", annotators="8", noise=0.0), "1..256"),
    ):
        with pytest.raises(ValueError, match=match):
            config(**bad)


def test_toy_only_keys_are_config_keys():
    assert set(TOY_ONLY) <= set(DEFAULTS)
