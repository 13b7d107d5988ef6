"""The tables people read: one detector's per-class report, and the paper-style comparison.

Markdown, because it prints legibly in a terminal and renders in a README or a pull request.
Numbers are F-measures in percent with one decimal, as the paper's tables give them; a class
without ground truth in the evaluation set is not a column; "-" marks a number that is undefined
(e.g. mAP without boxes).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def pct(x) -> str:
  """A fraction as a percentage with one decimal, '-' when undefined."""
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "-"
  return f"{100 * float(x):.1f}"


def report_markdown(report: Mapping, title: str) -> str:
  """One detector on one data set: a row per class, a column per level, and the mean."""
  classes = report["classes"]
  coco = report.get("coco", {})
  per_ap = coco.get("per_class", {})
  has_pixel = "pixel" in report["mean_f1"]
  head = ["class", "defects", "defect P", "defect R", "defect F"]
  head += ["pixel F"] if has_pixel else []
  head += ["image F", "AP@.5", "AP@[.5:.95]"]
  lines = [f"### {title}", "",
           f"{report['num_images']} images, score threshold {report['threshold']}; defect-level "
           f"match: IoU >= {report['matching']['iou']} or >= {report['matching']['cover']:.0%} "
           f"covered (see fabgen/detector/metrics.py).", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, row in classes.items():
    d = row["defect"]
    cells = [name, str(d["num_true"]), pct(d["precision"]), pct(d["recall"]), pct(d["f1"])]
    cells += [pct(row["pixel"]["f1"])] if has_pixel else []
    ap = per_ap.get(name, {})
    cells += [pct(row["image"]["f1"]), pct(ap.get("ap_50")), pct(ap.get("ap_50_95"))]
    lines.append("| " + " | ".join(cells) + " |")
  mean = report["mean_f1"]
  cells = ["**mean**", str(sum(r["defect"]["num_true"] for r in classes.values())), "", "",
           f"**{pct(mean['defect'])}**"]
  cells += [pct(mean["pixel"])] if has_pixel else []
  cells += [pct(mean["image"]), pct(coco.get("map_50")), pct(coco.get("map_50_95"))]
  lines.append("| " + " | ".join(cells) + " |")
  agnostic = report.get("any_defect")
  if agnostic:  # class-agnostic: "is there a defect here?", whatever class the detector said
    d, im = agnostic["defect"], agnostic["image"]
    cells = ["any defect", str(d["num_true"]), pct(d["precision"]), pct(d["recall"]),
             pct(d["f1"])]
    cells += [""] if has_pixel else []
    cells += [pct(im["f1"]), "", ""]
    lines.append("| " + " | ".join(cells) + " |")
  for name, row in report.get("unknown_classes", {}).items():
    cells = [f"{name} (not a detector class)", str(row["num_true"]), "",
             f"{pct(row['recall_any_class'])} (any class)"] + [""] * (len(head) - 4)
    lines.append("| " + " | ".join(cells) + " |")
  anyd = report.get("image_any_defect")
  if anyd:
    lines += ["", f"Image level, any defect: P {pct(anyd['precision'])}, R {pct(anyd['recall'])}, "
                  f"F {pct(anyd['f1'])}."]
  fa = report.get("false_alarms")
  if fa:
    text = (f"False alarms: {_num(fa['per_good_image'])} per defect-free image "
            f"({fa['alarms_on_good_images']} on {fa['num_good_images']} defect-free images); "
            f"{_num(fa['stray_per_image'])} predictions on no defect per image")
    if "per_metre" in fa:
      text += (f"; {_num(fa['per_metre'])} per metre of fabric ({fa['metres']:.1f} m at "
               f"{fa['pixel_pitch_mm']} mm per row)")
    lines += ["", text + "."]
  at = report.get("at_class_thresholds")
  if at:
    val = report.get("validation", {})
    lines += ["", f"Defect level at per-class thresholds chosen on a validation split "
                  f"({val.get('num_images', '?')} images, not in the rows above):", "",
              "| class | threshold | defect P | defect R | defect F |", "|---|---|---|---|---|"]
    for name, row in at.items():
      lines.append(f"| {name} | {row['threshold']:.3f} | {pct(row['precision'])} | "
                   f"{pct(row['recall'])} | {pct(row['f1'])} |")
  skipped = report.get("skipped")
  if skipped:
    first = skipped[0]
    where = first["source"] + (f"[{first['index']}]" if first["index"] is not None else "")
    lines += ["", f"Skipped {len(skipped)} unreadable records, e.g. {where}: {first['error']}"]
  if report.get("peak_rss_mb"):
    lines += ["", f"{report.get('seconds', 0):.0f} s, peak resident memory "
                  f"{report['peak_rss_mb']:.0f} MB."]
  if report.get("partial"):
    lines += ["", "**Partial**: the evaluation is still running (or stopped early)."]
  return "\n".join(lines) + "\n"


def _num(x) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "-"
  return f"{float(x):.2f}"


def comparison_rows(reports: Mapping[str, Mapping], level: str = "defect",
                    classes: Sequence[str] | None = None) -> tuple[list[str], list[list[str]]]:
  """(header, rows) of the paper-style table: a row per method, a column per class + mean."""
  if not reports:
    raise ValueError("comparison table needs at least one evaluated row")
  if classes is None:
    seen: list[str] = []
    for r in reports.values():
      seen += [c for c in r["classes"] if c not in seen]
    classes = seen
  head = ["method"] + list(classes) + ["mean"]
  if level == "defect":
    head += ["mAP@.5"]
  rows = []
  for method, r in reports.items():
    vals = [r["classes"].get(c, {}).get(level, {}).get("f1") for c in classes]
    defined = [0.0 if v is None or math.isnan(v) else v for v in vals]
    row = [method] + [pct(v) for v in vals] + [pct(sum(defined) / len(defined)
                                                   if defined else None)]
    if level == "defect":
      row.append(pct(r.get("coco", {}).get("map_50")))
    rows.append(row)
  return head, rows


def comparison_markdown(reports: Mapping[str, Mapping], title: str,
                        levels: Sequence[str] = ("defect", "pixel", "image")) -> str:
  """The adaptation result: one table per level (defect level first, as the paper's)."""
  out = [f"### {title}", ""]
  labelled = any(r["classes"] for r in reports.values())
  if not labelled:
    out += ["No labelled target defect the detector knows: no per-class F (see the false alarms "
            "and any unknown-class rows below).", ""]
  for level in levels if labelled else ():
    if level == "pixel" and not all("pixel" in r["mean_f1"] for r in reports.values()):
      continue
    head, rows = comparison_rows(reports, level)
    out += [f"F-measure (%), {level} level", "", "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out.append("")
  out += unknown_class_lines(reports) + false_alarm_lines(reports)
  return "\n".join(out)


def unknown_class_lines(reports: Mapping[str, Mapping]) -> list[str]:
  """Target classes the detector does not know: their counts, and the share of their defects a
  box of any class found (per method); nothing when every class is known."""
  names: list[str] = []
  for r in reports.values():
    names += [n for n in r.get("unknown_classes", {}) if n not in names]
  if not names:
    return []
  counts = {n: next(r["unknown_classes"][n]["num_true"] for r in reports.values()
                    if n in r.get("unknown_classes", {})) for n in names}
  head = ["method"] + [f"{n} ({counts[n]})" for n in names]
  out = ["Target classes the detector does not know (count in the header): found by a box of "
         "any class, recall (%)", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for method, r in reports.items():
    u = r.get("unknown_classes", {})
    out.append("| " + " | ".join([method] + [pct(u[n]["recall_any_class"]) if n in u else "-"
                                             for n in names]) + " |")
  return out + [""]


def false_alarm_lines(reports: Mapping[str, Mapping]) -> list[str]:
  """Class-agnostic rows ("is there a defect here?") and false alarms on defect-free images;
  nothing when no report has defect-free images."""
  if not any((r.get("false_alarms") or {}).get("num_good_images") for r in reports.values()):
    return []
  metres = any("per_metre" in (r.get("false_alarms") or {}) for r in reports.values())
  head = ["method", "any-defect F", "any-defect R", "image F (any defect)",
          "false alarms / defect-free image"]
  head += ["false alarms / metre (all images)"] if metres else []
  out = ["Any defect vs background, and false alarms on held-out defect-free images", "",
         "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for method, r in reports.items():
    fa = r.get("false_alarms") or {}
    d = (r.get("any_defect") or {}).get("defect", {})
    n_true = d.get("num_true", 0)
    cells = [method, pct(d.get("f1")) if n_true else "-", pct(d.get("recall")) if n_true else "-",
             pct((r.get("image_any_defect") or {}).get("f1")) if n_true else "-",
             f"{_num(fa.get('per_good_image'))} ({fa.get('alarms_on_good_images', 0)} on "
             f"{fa.get('num_good_images', 0)})"]
    if metres:
      cells.append(_num(fa.get("per_metre")))
    out.append("| " + " | ".join(cells) + " |")
  return out + [""]
