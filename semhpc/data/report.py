"""`semhpc data report OUT`: what an ingested dataset holds, read from its TFRecords (what training reads).

  * images per class and split (and the class balance the thesis warns about, docs/background.md: Data);
  * source image sizes, dtypes and file formats; instruments (vendor, model);
  * metadata coverage: the share of images with a value for each normalised field;
  * exact duplicates: images with the same pixel hash (`pixel_sha256`, computed by ingest on the
    source pixels). The split is a hash of the file *name*, so a copy under another name usually
    lands in another split: the test set then contains training images (leakage) and the measured
    accuracy is too optimistic. Duplicate groups that straddle splits are listed first.
Outputs: a table on stdout, OUT/report.json and OUT/report.png (images per class and split).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from semhpc.data import tfrecord
from semhpc.data.pipeline import load_manifest
from semhpc.data.sem_metadata import VENDOR_FIELDS
from semhpc.data.split import SPLITS
from semhpc.utils.atomic import atomic_path

COVERAGE_FIELDS = tuple(field for field in VENDOR_FIELDS if field != "vendor") + ("vendor",)
LISTED_DUPLICATE_GROUPS = 20  # in the printed table; report.json has them all


def build_report(data_dir) -> dict:
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir)
    classes = manifest["classes"]
    counts = {split: dict.fromkeys(classes, 0) for split in SPLITS}
    sizes, dtypes, formats, instruments = Counter(), Counter(), Counter(), Counter()
    known = Counter()
    by_hash = defaultdict(list)
    images = 0
    for split in SPLITS:
        for shard in manifest["shards"].get(split, []):
            for serialized in tfrecord.read_records(data_dir / shard):
                record = tfrecord.decode_example(serialized)
                meta = record["meta"]
                images += 1
                counts[split][classes[record["label"]]] += 1
                sizes[f"{meta.get('width')}x{meta.get('height')}"] += 1
                dtypes[str(meta.get("dtype"))] += 1
                formats[str(meta.get("format"))] += 1
                instruments[f"{meta.get('vendor') or 'unknown vendor'} / {meta.get('model') or 'unknown model'}"] += 1
                known.update(field for field in COVERAGE_FIELDS if meta.get(field) is not None)
                by_hash[record["pixel_sha256"]].append({
                    "path": record["path"].decode("utf-8", "backslashreplace"), "split": split,
                    "class": classes[record["label"]]})
    duplicates = [{"pixel_sha256": digest, "images": members, "splits": sorted({m["split"] for m in members})}
                  for digest, members in by_hash.items() if len(members) > 1]
    duplicates.sort(key=lambda group: (-len(group["splits"]), -len(group["images"]), group["pixel_sha256"]))
    return {
        "data_dir": str(data_dir),
        "images": images,
        "classes": classes,
        "counts": counts,
        "source_sizes": dict(sizes.most_common()),
        "dtypes": dict(dtypes.most_common()),
        "formats": dict(formats.most_common()),
        "instruments": dict(instruments.most_common()),
        "metadata_coverage": {field: (known[field] / images if images else 0.0) for field in COVERAGE_FIELDS},
        "duplicate_groups": duplicates,
        "duplicate_images": sum(len(group["images"]) - 1 for group in duplicates),
        "leaking_groups": sum(1 for group in duplicates if len(group["splits"]) > 1),
        "manifest_agrees": counts == {split: manifest["counts"].get(split, {}) for split in SPLITS},
    }


def format_report(report: dict) -> str:
    """The report as plain-text tables."""
    width = max(len(name) for name in report["classes"] + ["total"]) + 2
    lines = [f"{'class':<{width}}" + "".join(f"{split:>12}" for split in SPLITS) + f"{'total':>10}"]
    for name in report["classes"]:
        row = [report["counts"][split][name] for split in SPLITS]
        lines.append(f"{name:<{width}}" + "".join(f"{n:>12}" for n in row) + f"{sum(row):>10}")
    totals = [sum(report["counts"][split].values()) for split in SPLITS]
    lines.append(f"{'total':<{width}}" + "".join(f"{n:>12}" for n in totals) + f"{sum(totals):>10}")
    lines += ["", _counter_line("source sizes", report["source_sizes"]), _counter_line("dtypes", report["dtypes"]),
              _counter_line("formats", report["formats"]), _counter_line("instruments", report["instruments"]),
              "metadata coverage: " + ", ".join(f"{field} {share:.0%}"
                                                for field, share in report["metadata_coverage"].items())]
    lines.append(f"exact duplicates: {report['duplicate_images']} extra copies in {len(report['duplicate_groups'])} "
                 f"group(s); {report['leaking_groups']} group(s) straddle splits (leakage)")
    for group in report["duplicate_groups"][:LISTED_DUPLICATE_GROUPS]:
        where = ", ".join(f"{member['path']} ({member['split']})" for member in group["images"])
        lines.append(f"  {'LEAK ' if len(group['splits']) > 1 else ''}{group['pixel_sha256'][:12]}: {where}")
    if not report["manifest_agrees"]:
        lines.append("warning: manifest.json counts differ from the records in the shards; re-run the ingest")
    return "\n".join(lines)


def _counter_line(label: str, counts: dict) -> str:
    return f"{label}: " + ", ".join(f"{key} ({count})" for key, count in counts.items())


def save_chart(report: dict, path) -> None:
    """Grouped bars: images per class, one bar per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = np.arange(len(report["classes"]))
    bar_width = 0.8 / len(SPLITS)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.8 * len(positions)), 4.5))
    for offset, split in enumerate(SPLITS):
        axes.bar(positions + offset * bar_width, [report["counts"][split][name] for name in report["classes"]],
                 bar_width, label=split)
    axes.set_xticks(positions + bar_width * (len(SPLITS) - 1) / 2, report["classes"], rotation=35, ha="right")
    axes.set_ylabel("images")
    axes.set_title(f"{report['data_dir']}: {report['images']} images per class and split")
    axes.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
