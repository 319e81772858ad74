"""The diagnosis chain in chunks of radiographs / one radiograph at a time.

``bone-tumor diagnose`` puts ``chunk_size`` radiographs at a time through each model (one
U-Net call, one whole-image call, one batched CAM call per chunk;
:data:`bone_tumor_tf.diagnosis.run.DEFAULT_CHUNK_SIZE`). This benchmark runs
:func:`bone_tumor_tf.diagnosis.run.diagnose_files` on the same images with ``chunk_size=1``
(the per-image chain) and with the default, repetitions interleaved, each into a new
folder (a rerun into the same folder would skip every image), and checks that both give
the same rows. Before the timed repetitions one untimed run of each arm builds the
predict functions and the CAM model (costs paid once per command).

A second figure prices the segmenter's flip test-time augmentation (``--tta flip``, the
command's default: two U-Net passes) against one pass, chunked, without CAM.

A third prices an ensemble of two segmenters (``--segmenter`` given twice: two U-Net maps
averaged, each mirrored) against one, chunked, without CAM; the second U-Net is
``--second-segmenter`` or, by default, the same file again (same architecture, same cost).

A fourth figure isolates the model call: ``predict_probabilities`` (``predict_on_batch``)
against ``model.predict`` on one to three crops, the sizes the chain classifies per
radiograph.

Models: the ones ``make demo`` leaves (``runs/demo/attention-unet`` and the crop
classifier ``runs/demo/densenet121-multiclass`` on the embedded synthetic set), or any
segmenter / gt-box classifier / whole-image model and BTXRD-format folder given::

    python -m bench.diagnose_chain                                  # after make demo
    python -m bench.diagnose_chain --run-dir ~/runs/real/demo-fresh --data ~/data/btxrd256
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import interleaved, machine_info, result

ROOT = Path(__file__).resolve().parents[1]
# (segmenter, crop classifier, whole-image model or None) inside a run folder
LAYOUTS = {
    "real": ("attention-unet-normals", "densenet121-3class-gt-box",
             "densenet121-3class-whole-image"),
    "synthetic": ("attention-unet", "densenet121-multiclass", None),
}


def find_models(run_dir: Path) -> tuple[Path, Path, Path | None]:
    """The chain's models inside ``run_dir`` (a real-data or synthetic demo folder)."""
    for segmenter, classifier, whole in LAYOUTS.values():
        if (run_dir / segmenter / "model.keras").is_file():
            return (run_dir / segmenter / "model.keras", run_dir / classifier / "model.keras",
                    run_dir / whole / "model.keras" if whole else None)
    raise SystemExit(f"{run_dir}: no demo models found (run `make demo` first, or give "
                     "--run-dir of a real demo)")


def _max_difference(a: list[dict], b: list[dict]) -> float:
    worst = 0.0
    for row_a, row_b in zip(a, b, strict=True):
        if "error" in row_a or "error" in row_b:
            continue
        for key in ("probabilities", "whole_image_probabilities"):
            for name, value in row_a.get(key, {}).items():
                worst = max(worst, abs(value - row_b[key][name]))
        if [r["box"] for r in row_a["regions"]] != [r["box"] for r in row_b["regions"]]:
            return float("inf")
    return worst


def _time_chains(arms: dict[str, tuple], files, reps: int) -> tuple[dict, dict]:
    """Time :func:`diagnose_files` arms side by side: ``arms`` maps a name to ``(models,
    chunk_size, cam_method)``. Each run writes into a new folder (a rerun into the same
    folder would skip every image); one untimed run of each arm first (predict functions
    traced, CAM model cloned: paid once per command). Returns the timings and each arm's
    rows."""
    from bone_tumor_tf.diagnosis.run import diagnose_files

    scratch = Path(tempfile.mkdtemp(prefix="bench-diagnose-"))
    outputs: dict[str, list[dict]] = {}
    counter = {"n": 0}

    def arm(name: str, models, chunk_size: int, cam_method: str):
        def run():
            counter["n"] += 1
            out = scratch / f"{name}-{counter['n']}"
            start = time.perf_counter()
            outputs[name] = diagnose_files(models, files, out, cam_method=cam_method,
                                           chunk_size=chunk_size)
            seconds = time.perf_counter() - start
            shutil.rmtree(out, ignore_errors=True)
            return seconds
        return run

    runs = {name: arm(name, *config) for name, config in arms.items()}
    for warm in runs.values():
        warm()
    timed = interleaved(runs, reps)
    shutil.rmtree(scratch, ignore_errors=True)
    return timed, outputs


def chain_arms(models, files, cam_method: str, chunk_size: int, reps: int) -> dict:
    """Per-image vs chunked chain on ``files``; seconds per image and the speed-up."""
    timed, outputs = _time_chains({"one_at_a_time": (models, 1, cam_method),
                                   "chunked": (models, chunk_size, cam_method)}, files, reps)
    single, chunked = timed["one_at_a_time"]["median_s"], timed["chunked"]["median_s"]
    return {"cam": cam_method, "images": len(files), "chunk_size": chunk_size,
            "one_at_a_time_s_per_image": single / len(files),
            "chunked_s_per_image": chunked / len(files), "speedup": single / chunked,
            "max_abs_difference": _max_difference(outputs["one_at_a_time"],
                                                  outputs["chunked"]),
            "times_s": {k: v["times_s"] for k, v in timed.items()}}


def tta_arms(models, files, chunk_size: int, reps: int) -> dict:
    """The chunked chain (no CAM) with the segmenter's flip TTA / without: its cost."""
    from dataclasses import replace

    timed, _ = _time_chains({tta: (replace(models, tta=tta), chunk_size, "none")
                             for tta in ("flip", "none")}, files, reps)
    flip, none = timed["flip"]["median_s"], timed["none"]["median_s"]
    return {"images": len(files), "flip_s_per_image": flip / len(files),
            "none_s_per_image": none / len(files), "cost": flip / none,
            "times_s": {k: v["times_s"] for k, v in timed.items()}}


def ensemble_arms(models, pair, files, chunk_size: int, reps: int) -> dict:
    """The chunked chain (no CAM) with two segmenters averaged (``pair``) / with one
    (``models``): its cost."""
    timed, _ = _time_chains({"two": (pair, chunk_size, "none"),
                             "one": (models, chunk_size, "none")}, files, reps)
    two, one = timed["two"]["median_s"], timed["one"]["median_s"]
    return {"images": len(files), "two_s_per_image": two / len(files),
            "one_s_per_image": one / len(files), "cost": two / one,
            "times_s": {k: v["times_s"] for k, v in timed.items()}}


def predict_arms(model, size: int, calls: int, reps: int) -> dict:
    """``predict_probabilities`` vs ``model.predict`` on 1-3 crops per call."""
    from bone_tumor_tf.inference import predict_probabilities

    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (1 + k % 3, size, size), dtype=np.uint8)
               for k in range(calls)]
    for batch in batches[:3]:  # trace both paths for 1, 2 and 3 crops
        predict_probabilities(model, batch)
        model.predict(batch[..., None].astype(np.float32), verbose=0)

    def via_predict():
        for batch in batches:
            model.predict(batch[..., None].astype(np.float32), verbose=0)

    def via_predict_on_batch():
        for batch in batches:
            predict_probabilities(model, batch)

    timed = interleaved({"model_predict": via_predict,
                         "predict_probabilities": via_predict_on_batch}, reps)
    a, b = timed["model_predict"]["median_s"], timed["predict_probabilities"]["median_s"]
    return {"calls": calls, "model_predict_ms_per_call": 1000 * a / calls,
            "predict_probabilities_ms_per_call": 1000 * b / calls, "speedup": a / b,
            "times_s": {k: v["times_s"] for k, v in timed.items()}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.diagnose_chain",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default=str(ROOT / "runs" / "demo"),
                        help="demo folder holding the chain's models (default: runs/demo)")
    parser.add_argument("--data", default="demo",
                        help="BTXRD-format folder (default: the embedded synthetic set)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--second-segmenter", default=None,
                        help="the ensemble arm's second U-Net (default: the same one again)")
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="default: the command's DEFAULT_CHUNK_SIZE")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--predict-calls", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "bench" / "diagnose_chain.json"))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from bone_tumor_tf.data.dataset import resolve_data_dir
    from bone_tumor_tf.diagnosis.command import split_records
    from bone_tumor_tf.diagnosis.models import load_chain_models
    from bone_tumor_tf.diagnosis.run import DEFAULT_CHUNK_SIZE

    chunk_size = args.chunk_size or DEFAULT_CHUNK_SIZE
    segmenter, classifier, whole = find_models(Path(args.run_dir).expanduser())
    data, _ = resolve_data_dir(str(Path(args.data).expanduser()) if args.data != "demo"
                               else "demo", "btxrd")
    models = load_chain_models(segmenter, classifier, whole)
    records = split_records(data, args.split, classifier.parent / "splits.csv", segmenter)
    files = [r.path for r in records][:args.images]
    started = time.perf_counter()
    chains = [chain_arms(models, files, cam, chunk_size, args.reps)
              for cam in ("none", "gradcam++")]
    tta = tta_arms(models, files, chunk_size, args.reps)
    pair = load_chain_models([segmenter, args.second_segmenter or segmenter], classifier, whole)
    ensemble = ensemble_arms(models, pair, files, chunk_size, args.reps)
    predict = predict_arms(models.classifier, models.classifier_size, args.predict_calls,
                           2 * args.reps + 1)
    worst = min(c["speedup"] for c in chains)
    notes = "; ".join(
        f"CAM {c['cam']}: {c['speedup']:.1f}x ({c['one_at_a_time_s_per_image']:.3f} vs "
        f"{c['chunked_s_per_image']:.3f} s/image, max |diff| {c['max_abs_difference']:.1e})"
        for c in chains)
    notes += (f"; segmenter flip TTA / one pass (chunked, no CAM): {tta['cost']:.2f}x "
              f"({tta['flip_s_per_image']:.3f} vs {tta['none_s_per_image']:.3f} s/image)")
    notes += (f"; two segmenters averaged / one (chunked, no CAM): {ensemble['cost']:.2f}x "
              f"({ensemble['two_s_per_image']:.3f} vs {ensemble['one_s_per_image']:.3f} "
              "s/image)")
    notes += (f"; classifier call on 1-3 crops: predict_on_batch {predict['speedup']:.1f}x "
              f"faster than model.predict ({predict['predict_probabilities_ms_per_call']:.0f} "
              f"vs {predict['model_predict_ms_per_call']:.0f} ms)")
    entry = result("diagnose_chain",
                   {"models": {"segmenter": str(segmenter), "classifier": str(classifier),
                               "whole_image": str(whole) if whole else None},
                    "data": str(data), "split": args.split, "chains": chains,
                    "tta": tta, "ensemble": ensemble, "predict": predict,
                    "seconds": time.perf_counter() - started},
                   "one at a time / chunked seconds per image (worst CAM setting)", worst,
                   "reported", None, notes=notes)
    document = {"machine": machine_info(), "options": vars(args), "results": [entry]}
    Path(args.out).write_text(json.dumps(document, indent=2, default=str))
    print(notes)
    print(f"median of {args.reps} interleaved repetitions; {len(files)} images; "
          f"{entry['figures']['seconds']:.0f} s in all; {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
