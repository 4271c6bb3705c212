"""The audit's files: ``pairs.csv``, ``annotators.csv``, ``report.md``, ``report.html`` (figures embedded as
PNG), ``w_histogram.png/.svg``, ``eta.png/.svg`` and ``summary.json`` (written last). Everything is rendered
in memory first, then each file is written atomically through :mod:`rpo.io`: a failure leaves no
half-written file, and the previous audit's files stay as they were."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from rpo.io import atomic_write_json, atomic_write_text, save_figure

SHOW_CHARS = 400  # of each prompt / response shown in the reports


def text_of(value, limit: int = SHOW_CHARS) -> str:
    """A prompt or response for reading: text as is, chat messages as ``role: content`` lines; cut at ``limit``."""
    if isinstance(value, list):
        value = "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in value)
    value = str(value)
    return value if len(value) <= limit else value[:limit] + f" ... [{len(value) - limit} more characters]"


def figures(result):
    """``(w histogram, eta plot)`` as matplotlib Figures (no pyplot: no global state, any backend)."""
    from matplotlib.figure import Figure

    pairs, table = result.pairs, result.annotators
    fig_w = Figure(figsize=(6.5, 3.6))
    ax = fig_w.subplots()
    bins = np.linspace(0, 1, 41)
    groups = [(name, pairs["w"][pairs["annotator"] == name].to_numpy()) for name in table["annotator"]]
    ax.hist([g for _, g in groups], bins=bins, stacked=True, label=[str(n) for n, _ in groups])
    ax.set(xlabel="w: posterior that the label is correct (eq. 4)", ylabel="pairs", yscale="log")
    ax.set_title(f"{len(pairs)} pairs, {int((pairs['w'] < 0.5).sum())} with w < 0.5")
    if len(groups) <= 12:
        ax.legend(title="annotator", fontsize=8)
    fig_w.tight_layout()

    fig_e = Figure(figsize=(6.5, max(2.0, 0.35 * len(table) + 1.2)))
    ax = fig_e.subplots()
    y = np.arange(len(table))
    eta = table["eta"].to_numpy()
    err = np.vstack([eta - table["eta_low"].to_numpy(), table["eta_high"].to_numpy() - eta])
    ax.errorbar(eta, y, xerr=np.nan_to_num(err), fmt="o", capsize=3)
    ax.set_yticks(y, [f"{a} (n={n})" for a, n in zip(table["annotator"], table["n"])])
    ax.set(xlabel="eta: estimated reliability (95% bootstrap interval)", xlim=(min(0.45, np.nanmin(eta) - 0.05), 1.01))
    fig_e.tight_layout()
    return fig_w, fig_e


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _suspicious(result, dataset, top: int) -> list[dict]:
    rows = []
    for rec in result.pairs.head(top).itertuples(index=False):
        src = dataset[int(rec.row)]
        rows.append(
            {
                "row": int(rec.row),
                "annotator": rec.annotator,
                "w": float(rec.w),
                "d": float(rec.d),
                "prompt": text_of(src["prompt"]),
                "chosen": text_of(src["chosen"]),
                "rejected": text_of(src["rejected"]),
            }
        )
    return rows


def _eta_rows(table) -> list[list[str]]:
    return [
        [str(r.annotator), str(int(r.n)), f"{r.eta:.3f}", f"{r.eta_low:.3f}", f"{r.eta_high:.3f}"]
        for r in table.itertuples(index=False)
    ]


def _intro(s: dict) -> list[str]:
    lines = [
        f"Data: `{s['data']['source']}` ({s['n_pairs']} pairs, {s['n_annotators']} annotator(s), "
        f"annotator column: {s['data']['annotator_column'] or 'none (one virtual annotator)'}).",
        f"Witness: {s['witness']} from `{s['model']}`, scored {s['scoring']}; eta by exact EM at the fixed "
        f"witness (eqs. 4, 6), temperature {s['temperature']:.3g} "
        f"({'fitted by eq. 3' if s['settings']['calibrate'] else 'not fitted'}).",
        f"Pairs with w < 0.5: {s['n_below_half']}; expected number of wrong labels (sum of 1 - w): "
        f"{s['expected_wrong']:.1f}.",
    ]
    if s["n_identical"]:
        lines.append(f"{s['n_identical']} pair(s) have identical chosen and rejected: no evidence, w = eta.")
    return lines


def render_markdown(result, suspicious: list[dict]) -> str:
    s = result.summary
    out = ["# Preference data audit (`rpo audit`)", ""]
    out += [f"- {line}" for line in _intro(s)]
    out += [f"- **Warning**: {w}" for w in s["warnings"]]
    out += ["", "## Annotators", "", "| annotator | n | eta | eta_low | eta_high |", "|---|---|---|---|---|"]
    out += ["| " + " | ".join(r) + " |" for r in _eta_rows(result.annotators)]
    out += ["", "Interval: 95% percentile bootstrap over pairs (within each annotator), the witness held fixed.", ""]
    out += ["![eta](eta.png)", "", "## w, the posterior that each label is correct", "", "![w](w_histogram.png)", ""]
    out += [f"## The {len(suspicious)} most suspicious pairs (lowest w)", ""]
    for r in suspicious:
        out += [f"### row {r['row']} · annotator {r['annotator']} · w = {r['w']:.4f} · d = {r['d']:.3f}", ""]
        for part in ("prompt", "chosen", "rejected"):
            out += [f"**{part}**", "", "```text", r[part].replace("```", "'''"), "```", ""]
    return "\n".join(out) + "\n"


def render_html(result, suspicious: list[dict], png_w: str, png_eta: str) -> str:
    s, e = result.summary, html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>rpo audit</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}"
        "pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap}.warn{color:#a00}</style></head><body>",
        "<h1>Preference data audit (<code>rpo audit</code>)</h1><ul>",
        *[f"<li>{e(line)}</li>" for line in _intro(s)],
        *[f"<li class='warn'><b>Warning</b>: {e(w)}</li>" for w in s["warnings"]],
        "</ul><h2>Annotators</h2><table><tr><th>annotator</th><th>n</th><th>eta</th><th>eta_low</th>"
        "<th>eta_high</th></tr>",
        *["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in _eta_rows(result.annotators)],
        "</table><p>Interval: 95% percentile bootstrap over pairs (within each annotator), the witness held fixed.</p>",
        f"<img alt='eta' src='data:image/png;base64,{png_eta}'>",
        "<h2>w, the posterior that each label is correct</h2>",
        f"<img alt='w histogram' src='data:image/png;base64,{png_w}'>",
        f"<h2>The {len(suspicious)} most suspicious pairs (lowest w)</h2>",
    ]
    for r in suspicious:
        parts.append(
            f"<h3>row {r['row']} · annotator {e(str(r['annotator']))} · w = {r['w']:.4f} · d = {r['d']:.3f}</h3>"
        )
        parts += [f"<p><b>{p}</b></p><pre>{e(r[p])}</pre>" for p in ("prompt", "chosen", "rejected")]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_outputs(out: Path, result, dataset, *, top: int = 20) -> list[Path]:
    """Render everything, then write each file atomically (``summary.json`` last). Returns the paths."""
    suspicious = _suspicious(result, dataset, top)
    fig_w, fig_e = figures(result)
    png_w, png_e = _png(fig_w), _png(fig_e)
    texts = {
        "pairs.csv": result.pairs.to_csv(index=False),
        "annotators.csv": result.annotators.to_csv(index=False),
        "report.md": render_markdown(result, suspicious),
        "report.html": render_html(result, suspicious, png_w, png_e),
    }
    written = save_figure(fig_w, out, "w_histogram", dpi=110) + save_figure(fig_e, out, "eta", dpi=110)
    written += [atomic_write_text(out / name, text) for name, text in texts.items()]
    summary = dict(result.summary, outputs=sorted(p.name for p in written) + ["summary.json"])
    written.append(atomic_write_json(out / "summary.json", summary))
    return written
