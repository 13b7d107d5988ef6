"""Many protocol runs -> one table with 95 % confidence intervals, and paired differences.

One adaptation run (one target fabric, one seed) says little: the README's single-fabric gains
did not reproduce on another machine. The unit of replication here is a (target fabric, seed)
run of the whole protocol (`fabgen.adapt.multi_run`). Per table row (method) and class we report
the mean defect-level F over units with a two-sided Student-t interval,

  mean +- t_{0.975, n-1} * sd / sqrt(n)      (sd with n - 1; `scipy.stats.t`),

and, because every unit evaluates every method on the same target images, the *paired*
difference of each method's mean F against the control row, unit by unit, with the same
interval over those n differences. The paired interval is what says whether a method helps: the
fabric-to-fabric spread (large) cancels in it. With n = 1 an interval is undefined ("-").

Why t and not a bootstrap: with 6 units a bootstrap's percentiles come from at most 6 distinct
values and under-cover; the t interval is exact for normal unit means and the usual choice.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

from fabgen.adapt import table as table_lib

CONFIDENCE = 0.95


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict:
  """{"mean", "lo", "hi", "half", "n"} of the Student-t interval of the mean (NaN when n < 2)."""
  x = np.asarray([v for v in values if v is not None and not math.isnan(v)], np.float64)
  n = len(x)
  if n == 0:
    return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "half": math.nan, "n": 0}
  mean = float(x.mean())
  if n < 2:
    return {"mean": mean, "lo": math.nan, "hi": math.nan, "half": math.nan, "n": 1}
  half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
  return {"mean": mean, "lo": mean - half, "hi": mean + half, "half": half, "n": n}


def unit_scores(reports: Mapping[str, Mapping], classes: Sequence[str]) -> dict[str, dict]:
  """Row -> {class: F, "mean": mean over `classes`} for one unit (a class without a number = 0).

  The mean is over the given classes, as `table.comparison_rows` averages, so rows of one unit
  are comparable and the aggregate's "mean" is the mean of the per-unit table means.
  """
  out = {}
  for row, report in reports.items():
    f = {c: report["classes"].get(c, {}).get("defect", {}).get("f1") for c in classes}
    f = {c: 0.0 if v is None or math.isnan(v) else float(v) for c, v in f.items()}
    out[row] = {**f, "mean": sum(f.values()) / len(f)}
  return out


def aggregate(units: Mapping[str, Mapping[str, Mapping]], control: str,
              classes: Sequence[str] | None = None, extra: Mapping[str, Mapping] | None = None,
              baseline: str | None = None) -> dict:
  """Per row: per-class and mean F intervals; per row but the control: paired mean-F difference.

  With `baseline` (e.g. "no adaptation") each other row also gets its paired difference against
  it (`paired_baseline`): how much a method adds in all, extra training included.

  Args:
    units: unit name (e.g. "fabric40_seed0") -> that run's reports (row -> evaluation report).
    control: the row every method is paired against (e.g. "source only (control)").
    classes: the table's classes (default: every class any report has, in first-seen order).
    extra: unit -> {name: number} reported beside the rows (e.g. source-validation mean F).
  """
  if not units:
    raise ValueError("aggregate: no finished runs to aggregate")
  if classes is None:
    classes = []
    for reports in units.values():
      for r in reports.values():
        classes += [c for c in r["classes"] if c not in classes]
  scores = {u: unit_scores(reports, classes) for u, reports in units.items()}
  rows: list[str] = []
  for s in scores.values():
    rows += [r for r in s if r not in rows]
  missing = {u: [r for r in rows if r not in s] for u, s in scores.items()}
  missing = {u: m for u, m in missing.items() if m}
  if missing:
    raise ValueError(f"aggregate: runs lack rows (pairing needs every row in every run): "
                     f"{missing}")
  out = {"units": sorted(scores), "classes": list(classes), "control": control,
         "confidence": CONFIDENCE, "interval": "Student t over (fabric, seed) units",
         "rows": {}, "paired": {}, "per_unit": scores, "extra": {}}
  for row in rows:
    out["rows"][row] = {k: t_interval([scores[u][row][k] for u in out["units"]])
                        for k in list(classes) + ["mean"]}
  def paired(against):
    return {row: t_interval([scores[u][row]["mean"] - scores[u][against]["mean"]
                             for u in out["units"]]) for row in rows if row != against}

  if control in rows:
    out["paired"] = paired(control)
  if baseline is not None and baseline in rows:
    out["baseline"] = baseline
    out["paired_baseline"] = paired(baseline)
  for name in sorted({k for e in (extra or {}).values() for k in e}):
    out["extra"][name] = t_interval([extra[u].get(name, math.nan) for u in out["units"]
                                     if u in extra])
  return out


def _ci(d: Mapping, signed: bool = False) -> str:
  if math.isnan(d["mean"]):
    return "-"
  mean = f"{100 * d['mean']:+.1f}" if signed else table_lib.pct(d["mean"])
  if math.isnan(d["half"]):
    return mean
  return f"{mean} ± {100 * d['half']:.1f}"


def markdown(agg: Mapping, title: str) -> str:
  """The aggregate table: mean F ± CI half-width per class and overall; paired diff vs control."""
  classes = agg["classes"]
  n = len(agg["units"])
  base = agg.get("baseline")
  head = ["method"] + list(classes) + ["mean", "mean - control"] + (
      [f"mean - {base}"] if base else [])
  lines = [f"### {title}", "",
           f"{n} runs ({', '.join(agg['units'])}); defect-level F-measure (%), mean ± half-width "
           f"of the {agg['confidence']:.0%} {agg['interval']}; 'mean - X': the paired "
           f"difference of the run means against row X.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for row, cells in agg["rows"].items():
    paired = [agg["paired"].get(row)] + ([agg["paired_baseline"].get(row)] if base else [])
    lines.append("| " + " | ".join([row] + [_ci(cells[c]) for c in classes] + [
        f"**{_ci(cells['mean'])}**"] + [_ci(p, signed=True) if p else "" for p in paired]) + " |")
  for name, d in agg.get("extra", {}).items():
    lines += ["", f"{name}: {_ci(d)} (n = {d['n']})."]
  return "\n".join(lines) + "\n"


def against(units: Mapping[str, Mapping[str, Mapping]], other: Mapping[str, Mapping[str, Mapping]],
            classes: Sequence[str]) -> dict:
  """Per row both runs have: the paired mean-F difference (units - other) over shared units.

  The ablation's reading: the same (fabric, seed) units, one switch changed; rows the switch
  cannot reach (no adaptation, the control) come out at exactly 0 when their stages are shared.
  """
  shared = sorted(set(units) & set(other))
  if not shared:
    raise ValueError("aggregate: the two runs share no finished (fabric, seed) unit")
  mine = {u: unit_scores(units[u], classes) for u in shared}
  theirs = {u: unit_scores(other[u], classes) for u in shared}
  rows = [r for r in mine[shared[0]] if all(r in mine[u] and r in theirs[u] for u in shared)]
  return {"units": shared, "rows": {r: t_interval([mine[u][r]["mean"] - theirs[u][r]["mean"]
                                                   for u in shared]) for r in rows}}


def against_markdown(a: Mapping) -> str:
  """The `against` section: one line per row, paired difference with its interval."""
  lines = [f"Against {a['workdir']} (paired over {len(a['units'])} shared runs, this - that, "
           f"mean F points, {CONFIDENCE:.0%} Student t):", "",
           "| method | difference |", "|---|---|"]
  lines += [f"| {row} | {_ci(d, signed=True)} |" for row, d in a["rows"].items()]
  return "\n".join(lines) + "\n"
