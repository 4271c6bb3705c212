"""The witness-dial world family (issue 12): today's world keeps its cache key; the dial's oracle."""

from rpo.toy.tasks import MARKER, score, styled_score
from rpo.toy.world import DIAL_FAMILY, WorldConfig, dial_world, make_pairs


def test_defaults_keep_todays_cache_key_and_oracle():
    assert WorldConfig().key() == "14f215baa356"  # the committed toy study's world (.cache/world-14f215baa356)
    assert WorldConfig().oracle() is score
    assert dial_world(0.5).key() != dial_world(0.0).key() != WorldConfig().key()
    assert dial_world(0.5).style_rate == DIAL_FAMILY["style_rate"]


def test_styled_score_mixes_the_marker_into_correctness():
    assert styled_score("rev:abc=", "cba", 0.0) == score("rev:abc=", "cba") == 1.0
    assert styled_score("rev:abc=", "cba" + MARKER, 0.0) == 1.0  # the marker is not part of the answer
    assert styled_score("rev:abc=", "cba", 0.75) == 0.25
    assert styled_score("rev:abc=", "xyz" + MARKER, 0.75) == 0.75
    assert styled_score("rev:abc=", "xyz" + MARKER, 1.0) == styled_score("rev:abc=", "cba" + MARKER, 1.0) == 1.0


def test_pairs_follow_the_dial_oracle():
    prompts, samples = ["rev:abc="], [["cba", "xba" + MARKER]]
    (plain,) = make_pairs(prompts, samples, oracle=dial_world(0.0).oracle())
    (styled,) = make_pairs(prompts, samples, oracle=dial_world(0.75).oracle())
    assert plain["chosen"] == "cba" and styled["chosen"] == "xba" + MARKER
    assert make_pairs(["rev:abc="], [["cba", "cba" + MARKER]], oracle=dial_world(0.0).oracle()) == []  # a tie


def test_config_names_its_world_and_beta():
    from types import SimpleNamespace

    import pytest

    from rpo.pipeline.spec import config, row_label
    from rpo.toy.settings import TrainSettings
    from rpo.toy.study import config_settings, train_and_measure
    from rpo.toy.world import WorldConfig, dial_world, world_config

    assert world_config("today") == WorldConfig() and world_config("0.5") == dial_world(0.5)
    s = TrainSettings()
    assert config_settings(config(), s) is s and config_settings(config(beta=1.0), s).beta == 1.0
    assert row_label(config(labels="filtered")) == "DPO (flips removed)"
    assert row_label(config(robust=True, labels="true")) == "R-DPO (clean labels)"
    for bad in ({"dial": 0.5}, {"dial": "2"}, {"dial": "strong"}, {"labels": "clean"}):
        with pytest.raises(ValueError):
            config(**bad)
    # a config trained on another world than the one it names is refused before any training
    today = SimpleNamespace(config=WorldConfig(), path=SimpleNamespace(name="world-today"))
    with pytest.raises(ValueError, match="names another world"):
        train_and_measure(today, config(dial="0.5"), 0, s)
