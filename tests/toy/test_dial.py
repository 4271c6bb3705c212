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
