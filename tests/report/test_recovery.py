import math

import pytest

from rpo.pipeline.spec import row_label
from rpo.report.recovery import damage_recovered


def test_share_is_ratio_of_mean_paired_differences():
    base = [0.50, 0.52, 0.48, 0.51]
    ceiling = [0.70, 0.73, 0.69, 0.71]
    method = [0.60, 0.62, 0.59, 0.61]  # about half of the damage back
    r = damage_recovered(method, base, ceiling)
    assert r["resolved"] and r["n"] == 4
    assert r["share"] == pytest.approx((0.10 + 0.10 + 0.11 + 0.10) / (0.20 + 0.21 + 0.21 + 0.20))
    assert r["lo"] <= r["share"] <= r["hi"]
    assert damage_recovered(method, base, ceiling) == r  # deterministic


def test_unresolved_damage_gives_no_share():
    r = damage_recovered([0.5, 0.6, 0.4], [0.5, 0.5, 0.5], [0.52, 0.47, 0.51])
    assert not r["resolved"] and math.isnan(r["share"])


def test_shapes_must_pair():
    with pytest.raises(ValueError, match="pair by seed"):
        damage_recovered([0.1], [0.1, 0.2], [0.3, 0.4])


# --- the recovery rows of a Table 2 analogue (rpo.report.aggregate) ---------------------------------------------


def _frame(values: dict, status: dict | None = None):
    """A study's tidy frame from ``{label: [per-seed win_rate]}``."""
    import pandas as pd

    status = status or {}
    return pd.DataFrame(
        [
            {
                "label": lab,
                "seed": s,
                "status": status.get((lab, s), "ok"),
                "run_id": f"run-{lab}",
                "config_hash": f"h-{lab}",
                "win_rate": v,
            }
            for lab, vals in values.items()
            for s, v in enumerate(vals)
        ]
    )


def _study(methods=("R-DPO",)):
    from rpo.pipeline.spec import Study

    return Study(
        "t", "T", (), 4, rows=("label",), metrics=("win_rate",), recovery=("DPO", "DPO (clean labels)", methods)
    )


def _rows(frame, study):
    from rpo.report.aggregate import build_table

    _, rows = build_table(study, frame)
    return {r["keys"]["label"]: r["cells"]["win_rate"] for r in rows}


def test_recovery_row_is_the_paired_share_with_its_interval():
    base = [0.50, 0.52, 0.48, 0.51]
    ceiling = [b + d for b, d in zip(base, (0.10, 0.12, 0.09, 0.11))]
    rdpo = [b + 0.5 * (c - b) for b, c in zip(base, ceiling)]  # recovers exactly half, seed by seed
    cells = _rows(_frame({"DPO": base, "DPO (clean labels)": ceiling, "R-DPO": rdpo}), _study())
    c = cells["share of the noise damage recovered: R-DPO"]
    assert c["mean"] == pytest.approx(0.5) and c["lo"] == pytest.approx(0.5) and c["hi"] == pytest.approx(0.5)
    assert c["text"] == "0.50 [0.50, 0.50]" and c["n"] == 4
    assert c["run_ids"] == ["run-DPO", "run-DPO (clean labels)", "run-R-DPO"]  # traceable to all three runs


def test_recovery_of_an_unresolved_damage_is_not_a_number():
    base = [0.50, 0.52, 0.48, 0.51]
    ceiling = [0.52, 0.49, 0.50, 0.50]  # the ceiling does not beat the noisy base: no damage to recover
    cells = _rows(_frame({"DPO": base, "DPO (clean labels)": ceiling, "R-DPO": base}), _study())
    c = cells["share of the noise damage recovered: R-DPO"]
    assert math.isnan(c["mean"]) and c["text"] == "n/a (damage not resolved)"
    damage = cells["noise damage (DPO (clean labels) − DPO)"]  # the damage itself, paired by seed, is shown
    assert damage["mean"] == pytest.approx(sum(c - b for c, b in zip(ceiling, base)) / 4)


def test_recovery_with_a_failed_seed_says_it_is_missing():
    base = [0.50, 0.52, 0.48, 0.51]
    ceiling = [0.60, 0.63, 0.58, 0.62]
    frame = _frame({"DPO": base, "DPO (clean labels)": ceiling, "R-DPO": base}, {("R-DPO", 2): "failed"})
    c = _rows(frame, _study())["share of the noise damage recovered: R-DPO"]
    assert c["n"] == 3 and c["n_failed"] == 1 and c["text"].startswith("missing (1/4 seeds")


def test_toy_table2_analogues_carry_their_ceilings_and_controls():
    from rpo.pipeline.profiles import get_profile
    from rpo.toy.settings import DIAL_SETTINGS, INFORMATIVE_DIAL

    studies = {s.name: s for s in get_profile("toy").studies}
    for name in ("table2", "table2_informative"):
        labels = {row_label(c) for c in studies[name].configs}
        assert {"DPO (clean labels)", "DPO (flips removed)", "cDPO", "rDPO", "Holder-DPO"} <= labels
        assert {f"{x}+LS" for x in ("DPO", "IPO", "SimPO", "CPO")} <= labels  # smoothing at 1 - eta0, every loss
        assert studies[name].recovery[:2] == ("DPO", "DPO (clean labels)")
    informative = studies["table2_informative"].configs
    assert {(c["dial"], c["beta"]) for c in informative} == {(INFORMATIVE_DIAL, DIAL_SETTINGS.beta)}
    assert {(c["dial"], c["beta"]) for c in studies["table2"].configs} == {("today", None)}
    # Table 3 and Figure 2 at the informative level: today's grids, in the dial world at its beta
    names = [s.name for s in get_profile("toy").studies]
    for name in ("table2", "table3", "figure2"):
        assert names.index(name + "_informative") == names.index(name) + 1  # side by side in results/ and README
    for name in ("table3", "figure2"):
        level = studies[name + "_informative"].configs
        assert {(c["dial"], c["beta"]) for c in level} == {(INFORMATIVE_DIAL, DIAL_SETTINGS.beta)}
        today = [{**c, "dial": INFORMATIVE_DIAL, "beta": DIAL_SETTINGS.beta} for c in studies[name].configs]
        assert list(level) == today and studies[name + "_informative"].seeds == studies[name].seeds


def test_e_step_gain_row_is_r_x_minus_x_ls_paired_by_seed():
    from rpo.pipeline.spec import Study

    base = [0.50, 0.52, 0.48, 0.51]
    frame = _frame({"DPO": base, "DPO+LS": [b - 0.01 for b in base], "R-DPO": [b + 0.02 for b in base]})
    study = Study("t", "T", (), 4, rows=("label",), metrics=("win_rate",), gains=True)
    cells = _rows(frame, study)
    assert cells["RPO gain (R-DPO − DPO)"]["mean"] == pytest.approx(0.02)
    assert cells["E-step gain (R-DPO − DPO+LS)"]["mean"] == pytest.approx(0.03)
