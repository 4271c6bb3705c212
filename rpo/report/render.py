"""Render a study's table rows as Markdown, CSV and LaTeX (no timestamps: the same runs, the same bytes)."""

from __future__ import annotations

import io

import pandas as pd

from rpo.pipeline.profiles import Study
from rpo.report.aggregate import _fmt_key


def to_markdown(study: Study, labels, rows) -> str:
    head = list(study.rows) + labels
    out = [f"**{study.title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [_fmt_key(r["keys"][k]) for k in study.rows] + [_text(r["cells"][lab]) for lab in labels]
        if r["gain"]:
            vals = [f"**{v}**" for v in vals]
        out.append("| " + " | ".join(vals) + " |")
    out += [
        "",
        "Mean ± half-width of the 95% t-interval over seeds; RPO gains are paired by seed."
        if study.gains
        else "Mean ± half-width of the 95% t-interval over seeds.",
    ]
    if study.recovery:
        base, ceiling = study.recovery[:2]
        out += [
            f"Share of the noise damage recovered: (method − {base}) / ({ceiling} − {base}), paired by seed, with its"
            " 95% paired-bootstrap interval; undefined where the damage itself is not resolved."
        ]
    out += [""]
    return "\n".join(out)


def to_csv(study: Study, labels, rows) -> str:
    recs = []
    for r in rows:
        for lab in labels:
            c = r["cells"][lab]
            recs.append(
                {
                    **{k: r["keys"][k] for k in study.rows},
                    "column": lab,
                    "gain": r["gain"],
                    "mean": None if c is None else c["mean"],
                    "ci95_low": None if c is None else c.get("lo", c["mean"] - c["half"]),
                    "ci95_high": None if c is None else c.get("hi", c["mean"] + c["half"]),
                    "n": None if c is None else c["n"],
                    "n_expected": None if c is None else c["n_expected"],
                    "n_failed": None if c is None else c["n_failed"],
                    "n_not_run": None if c is None else c["n_not_run"],
                    "text": _text(c),
                }
            )
    buf = io.StringIO()
    pd.DataFrame(recs).to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    return buf.getvalue()


def to_latex(study: Study, labels, rows) -> str:
    head = [_tex(k) for k in study.rows] + [_tex(lab) for lab in labels]
    out = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_tex(study.title)}}}",
        rf"\label{{tab:{study.name}}}",
        r"\begin{tabular}{" + "l" * len(study.rows) + "c" * len(labels) + "}",
        r"\toprule",
        " & ".join(head) + r" \\",
        r"\midrule",
    ]
    for r in rows:
        vals = [_tex(_fmt_key(r["keys"][k])) for k in study.rows] + [_tex(_text(r["cells"][lab])) for lab in labels]
        if r["gain"]:
            vals = [rf"\textbf{{{v}}}" for v in vals]
        out.append(" & ".join(vals) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def _text(c) -> str:
    return "—" if c is None else c["text"]


def _tex(s: str) -> str:
    s = str(s)
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        s = s.replace(a, b)
    return s.replace("±", r"$\pm$").replace("−", r"$-$")
