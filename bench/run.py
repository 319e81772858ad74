"""Run the benchmark suite: ``make bench`` = ``python -m bench.run``.

Writes ``bench/results.json`` (machine, library versions, options, every figure) and
prints one table row per target. Options size the run; the defaults take about 10-15
minutes on 2 CPU cores; ``--quick`` is a fast, small check (small images, 1 repetition),
whose figures are not meant to be quoted.

Examples::

    python -m bench.run                                   # everything, defaults
    python -m bench.run --quick                           # fast and small
    python -m bench.run --only input_pipeline predict --images 64 --image-size 224
    python -m bench.run --only hardware_peak --compare-settings   # oneDNN / XLA / bf16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BENCHMARKS = ("input_pipeline", "hardware_peak", "frozen_phase", "frozen_phase_accuracy",
              "predict", "gradcam", "memory")
RESULTS = Path(__file__).resolve().parent / "results.json"
#: Trained backbone left by ``make demo`` (the accuracy arm's default when present).
DEMO_BACKBONE = Path("runs/demo/densenet121-multiclass/model.keras")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS),
                   help="benchmarks to run")
    p.add_argument("--skip", nargs="+", choices=BENCHMARKS, default=[])
    p.add_argument("--quick", action="store_true",
                   help="small and fast: 8 images, 64 px, 1 repetition, 1 seed, 2 epochs")
    p.add_argument("--images", type=int, default=None,
                   help="generated radiographs (default 64; quick 8); the input-pipeline "
                        "benchmark trains on at most 48 of them")
    p.add_argument("--min-side", type=int, default=1000, help="smallest source image side")
    p.add_argument("--max-side", type=int, default=2000, help="largest source image side")
    p.add_argument("--image-size", type=int, default=None,
                   help="model input side (default 224; quick 64)")
    p.add_argument("--batch-size", type=int, default=None, help="default 16; quick 4")
    p.add_argument("--arch", default="densenet121", choices=("densenet121", "resnet50", "tiny"),
                   help="model of the pipeline, frozen-phase, predict, Grad-CAM and memory "
                        "benchmarks (tiny: a small stand-in for smoke tests)")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (2; quick 1)")
    p.add_argument("--epochs", type=int, default=None, help="frozen-phase epochs (10; quick 2)")
    p.add_argument("--seeds", type=int, default=None, help="frozen-phase seeds (2; quick 1)")
    p.add_argument("--feature-views", type=int, default=1, help="frozen-phase cached views")
    p.add_argument("--accuracy-images", type=int, default=None,
                   help="frozen_phase_accuracy: synthetic images at 64 px (300; quick 40)")
    p.add_argument("--accuracy-weights", default="auto", metavar="PATH|auto|none",
                   help="frozen_phase_accuracy: backbone source; auto: the demo's "
                        f"{DEMO_BACKBONE} when it exists and --arch is densenet121, else "
                        "random weights (whose features leave the head near chance)")
    p.add_argument("--accuracy-seeds", type=int, default=None,
                   help="frozen_phase_accuracy: seeds per method (3; quick 2)")
    p.add_argument("--peak-archs", nargs="+", default=["resnet50", "densenet121"],
                   choices=("resnet50", "densenet121", "tiny"))
    p.add_argument("--compare-settings", action="store_true",
                   help="hardware_peak: also compare oneDNN off, XLA and mixed bfloat16 in "
                        "subprocesses (slow: XLA compiles for minutes on 2 cores)")
    p.add_argument("--cam-methods", nargs="+", default=["gradcam", "gradcam++"],
                   choices=("gradcam", "gradcam++", "scorecam"))
    p.add_argument("--memory-records", type=int, default=None,
                   help="records of the memory run (3746; quick 64)")
    p.add_argument("--memory-batch-size", type=int, default=None, help="default 32; quick 4")
    p.add_argument("--out", default=str(RESULTS), help="results JSON file")
    return p


def resolve(args) -> dict:
    """The run's sizes: explicit options, else the quick or the default value."""
    quick = args.quick

    def pick(value, default, small):
        return value if value is not None else (small if quick else default)

    return {"images": pick(args.images, 64, 8), "image_size": pick(args.image_size, 224, 64),
            "batch_size": pick(args.batch_size, 16, 4), "reps": pick(args.reps, 2, 1),
            "epochs": pick(args.epochs, 10, 2), "seeds": pick(args.seeds, 2, 1),
            "accuracy_images": pick(args.accuracy_images, 300, 40),
            "accuracy_seeds": pick(args.accuracy_seeds, 3, 2),
            "memory_records": pick(args.memory_records, 3746, 64),
            "memory_batch_size": pick(args.memory_batch_size, 32, 4)}


def accuracy_weights(choice: str | None, arch: str) -> str | None:
    """Backbone of the accuracy arm: ``auto`` -> the demo's DenseNet121 if present."""
    if choice in (None, "none"):
        return None
    if choice == "auto":
        root = Path(__file__).resolve().parents[1]
        found = root / DEMO_BACKBONE
        return str(found) if arch == "densenet121" and found.is_file() else None
    return choice


def format_table(results: list[dict]) -> str:
    """Plain-text table: benchmark, ratio, value, target, met, notes."""
    rows = [("benchmark", "ratio", "value", "target", "met", "notes")]
    for r in results:
        value = "-" if r.get("ratio") is None else f"{r['ratio']:.3g}"
        met = {True: "yes", False: "NO", None: "-"}[r.get("met")]
        rows.append((r["name"], r.get("ratio_name", ""), value, r.get("target", ""), met,
                     r.get("notes", "")))
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5]
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def run_benchmarks(args) -> dict:
    """Every selected benchmark in turn; returns the ``results.json`` document."""
    from bench import (
        frozen_phase,
        gradcam_batching,
        hardware_peak,
        input_pipeline,
        memory,
        predict_throughput,
    )
    from bench.common import build_model, load_bench_data, machine_info

    sizes = resolve(args)
    selected = [b for b in BENCHMARKS if b in args.only and b not in args.skip]
    started = time.perf_counter()
    document = {"machine": machine_info(), "options": {**vars(args), **sizes},
                "results": [], "seconds": {}}
    data = None
    if set(selected) - {"hardware_peak", "frozen_phase_accuracy"}:
        start = time.perf_counter()
        data = load_bench_data(sizes["images"], sizes["image_size"], args.min_side,
                               args.max_side)
        document["seconds"]["inputs"] = time.perf_counter() - start
    shared_model = None

    def model():
        nonlocal shared_model
        if shared_model is None:
            shared_model = build_model(args.arch, sizes["image_size"])
        return shared_model

    bs, reps = sizes["batch_size"], sizes["reps"]
    jobs = {
        "input_pipeline": lambda: input_pipeline.run(data, args.arch, bs, 2 * reps, images=48),
        "hardware_peak": lambda: hardware_peak.run(sizes["image_size"], bs, 3, reps,
                                                   tuple(args.peak_archs)),
        "frozen_phase": lambda: frozen_phase.run(data, args.arch, sizes["epochs"], bs,
                                                 sizes["seeds"], args.feature_views),
        "frozen_phase_accuracy": lambda: frozen_phase.run_accuracy(
            args.arch, sizes["epochs"], 32, sizes["accuracy_seeds"], args.feature_views,
            sizes["accuracy_images"], 64, accuracy_weights(args.accuracy_weights, args.arch)),
        "predict": lambda: predict_throughput.run(data, args.arch, bs, 2 * reps + 1, model()),
        "gradcam": lambda: gradcam_batching.run(data, args.arch, bs, tuple(args.cam_methods),
                                                1, model()),
        "memory": lambda: memory.run(data.root, sizes["image_size"], sizes["memory_records"],
                                     sizes["memory_batch_size"], arch=args.arch),
    }
    for name in selected:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            entry = jobs[name]()
        except Exception as error:  # one broken benchmark must not hide the others
            entry = {"name": name, "ratio": None, "met": None, "target": "",
                     "ratio_name": "", "notes": f"failed: {type(error).__name__}: {error}"[:300],
                     "figures": {}}
        entry["seconds"] = time.perf_counter() - start
        document["results"].append(entry)
        print(f"[bench] {name}: {entry.get('notes') or entry.get('ratio')} "
              f"({entry['seconds']:.0f} s)", file=sys.stderr, flush=True)
    if args.compare_settings and "hardware_peak" in selected:
        start = time.perf_counter()
        document["settings"] = hardware_peak.compare_settings(
            image_size=sizes["image_size"], batch_size=bs, reps=reps,
            archs=tuple(args.peak_archs))
        document["seconds"]["compare_settings"] = time.perf_counter() - start
    document["seconds"]["total"] = time.perf_counter() - started
    return document


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    document = run_benchmarks(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=str))
    print(format_table(document["results"]))
    if "settings" in document:
        for name, entry in document["settings"].items():
            shown = {a: f"{v['train_images_per_s']:.2f} img/s "
                        f"(x{v.get('images_per_s_vs_default', float('nan')):.2f})"
                     for a, v in entry.items() if isinstance(v, dict) and "train_images_per_s" in v}
            print(f"setting {name}: {shown or entry.get('error')}")
    print(f"total {document['seconds']['total']:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
