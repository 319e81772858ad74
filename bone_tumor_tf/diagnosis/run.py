"""Diagnose a batch of radiographs and write what a reviewer needs.

``OUT/diagnoses.jsonl``: one JSON object per image, written and flushed as each chunk of
images finishes (:data:`DEFAULT_CHUNK_SIZE` radiographs go through each model together):
``file``, ``finding``, ``probabilities`` (normal / benign / malignant),
``chain_probabilities`` and ``whole_image_probabilities`` (when a whole-image model is
given), ``regions`` (each with ``box`` = ``[x_min, y_min, x_max, y_max]`` inclusive, in
the file's own pixels, ``score``, ``area``, ``label``, ``probabilities``), ``size``
(``[height, width]`` of the file); or ``file`` and ``error`` (one line) for a file that
could not be read. A rerun into the same folder skips the files already written there, so an
interrupted batch loses at most its unfinished chunk; ``OUT/chain_settings.json`` records
what the rows depend on (the models, the mask threshold, the segmenter's test-time
augmentation, the region options), and a rerun with other settings is refused rather than
mixing rows of two chains; a second run started while one is writing the folder is refused
at once (:func:`bone_tumor_tf.io.folder_lock`). The whole-image weight and the operating
point are not among them: the evaluation recomputes every decision from the stored
probabilities.

``OUT/panels/<stem>.png``: the radiograph with the heatmap of each region's classification
inside its crop, the segmenter's mask contour (yellow), the boxes (red malignant, orange
benign, green normal) with class and probability; ``OUT/thumbs/<stem>.png``; and
``OUT/index.html`` (:mod:`.page`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bone_tumor_tf.data.images import read_image_with_scale
from bone_tumor_tf.diagnosis.chain import (
    DEFAULT_WHOLE_IMAGE_WEIGHT,
    Diagnosis,
    diagnose_image,
    explain_findings,
)
from bone_tumor_tf.diagnosis.page import write_index
from bone_tumor_tf.diagnosis.regions import (
    DEFAULT_BOX_THRESHOLD,
    DEFAULT_MERGE_OVERLAP,
    DEFAULT_MIN_AREA,
    check_box_threshold,
    effective_box_threshold,
)
from bone_tumor_tf.errors import BoneTumorError, DataError
from bone_tumor_tf.explain.cam import CamExplainer
from bone_tumor_tf.explain.overlay import annotate, overlay_heatmap
from bone_tumor_tf.inference import load_input
from bone_tumor_tf.io import atomic_write_json, folder_lock, unique_stems, write_png

logger = logging.getLogger(__name__)

RESULTS_NAME = "diagnoses.jsonl"
SETTINGS_NAME = "chain_settings.json"
THUMBNAIL_SIDE = 192
_BOX_COLORS = {"malignant": (40, 40, 230), "benign": (0, 150, 255), "normal": (60, 180, 60)}


def draw_panel(original: np.ndarray, diagnosis: Diagnosis, threshold: float) -> np.ndarray:
    """The review image of one radiograph (see the module docstring): BGR uint8 (H, W, 3)."""
    heat = np.zeros(original.shape[:2], np.float32)
    seen = np.zeros(original.shape[:2], bool)
    for finding in diagnosis.regions:
        if finding.heatmap is not None:
            heat = np.maximum(heat, finding.heatmap)
            x0, y0, x1, y1 = finding.geometry.crop_box
            seen[y0:y1, x0:x1] = True
    gray_bgr = cv2.cvtColor(original, cv2.COLOR_GRAY2BGR)
    panel = np.where(seen[..., None], overlay_heatmap(original, heat, alpha=0.4), gray_bgr)
    mask = (diagnosis.probability_map >= threshold).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, min(original.shape[:2]) // 200)
    cv2.drawContours(panel, contours, -1, (0, 230, 230), thickness)
    font_scale = max(0.35, min(original.shape[:2]) / 700)
    for finding in diagnosis.regions:
        label = max(("normal", "benign", "malignant"), key=lambda c: finding.probabilities[c])
        x0, y0, x1, y1 = finding.region.box
        color = _BOX_COLORS[label]
        cv2.rectangle(panel, (x0, y0), (x1, y1), color, thickness + 1)
        text = f"{label} {finding.probabilities[label]:.2f}"
        cv2.putText(panel, text, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(panel, text, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    color, thickness, cv2.LINE_AA)
    p = diagnosis.probabilities
    caption = (f"{diagnosis.finding} | normal {p['normal']:.2f} benign {p['benign']:.2f} "
               f"malignant {p['malignant']:.2f} | {len(diagnosis.regions)} region(s)")
    return annotate(panel, caption)


def _thumbnail(panel: np.ndarray) -> np.ndarray:
    scale = THUMBNAIL_SIDE / max(panel.shape[:2])
    if scale >= 1:
        return panel
    size = (max(1, round(panel.shape[1] * scale)), max(1, round(panel.shape[0] * scale)))
    return cv2.resize(panel, size, interpolation=cv2.INTER_AREA)


def read_results(out_dir: str | Path) -> list[dict]:
    """The rows of ``OUT/diagnoses.jsonl`` (a torn last line from a kill is ignored)."""
    path = Path(out_dir) / RESULTS_NAME
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def chain_settings(models, min_area: int, merge_overlap: float,
                   box_threshold: float | None) -> dict:
    """What a row of ``diagnoses.jsonl`` depends on (model files resolved to absolute paths).

    ``box_threshold`` is stored as it acts: None when it is at or above the mask threshold
    (the box is the region's own component, as in runs that did not record it).
    """
    box_threshold = effective_box_threshold(box_threshold, models.threshold)
    paths = {role: str(Path(path).resolve()) for role, path in (models.paths or {}).items()}
    return {"models": paths, "mask_threshold": float(models.threshold),
            "segmenter_tta": models.tta, "min_area": int(min_area),
            "merge_overlap": float(merge_overlap),
            "box_threshold": box_threshold}


def _check_settings(out_dir: Path, settings: dict, has_rows: bool) -> None:
    """Refuse to add rows of another chain to ``out_dir`` (see the module docstring)."""
    path = out_dir / SETTINGS_NAME
    if path.is_file():
        stored = json.loads(path.read_text(encoding="utf-8"))
        # in the settings' own order, so that the cause (e.g. the mask threshold) comes first
        changed = [k for k in dict.fromkeys([*settings, *stored])
                   if settings.get(k) != stored.get(k)]
        if changed:
            first = changed[0]
            raise BoneTumorError(
                f"{out_dir}: holds diagnoses made with other chain settings ({first}: "
                f"{stored.get(first)} there, {settings.get(first)} now"
                f"{f'; also {len(changed) - 1} more' if len(changed) > 1 else ''}); "
                "give a new --out or delete the folder")
        return
    if has_rows:
        logger.warning("%s: rows from a run that did not record its settings are reused",
                       out_dir)
    atomic_write_json(path, settings)


def _case(row: dict, out_dir: Path) -> dict:
    if "error" in row:
        return {"image": Path(row["file"]).name, "error": row["error"]}
    return {"image": Path(row["file"]).name, "panel": row["panel"],
            "thumbnail": row["thumbnail"], "finding": row["finding"],
            "probabilities": row["probabilities"], "regions": len(row["regions"])}


def _read(models, path: Path) -> tuple[np.ndarray, float, np.ndarray | None]:
    """The decoded radiograph, its decode scale and the whole-image model's input (or None)."""
    if models.whole_image is None:
        original, scale = read_image_with_scale(path)
        return original, scale, None
    prepared = load_input(path, models.whole_image_size)
    return prepared.original, prepared.scale, prepared.input


def _error_row(path: Path, error: DataError) -> dict:
    """The row of a file the chain could not read or use (the one-line error is logged)."""
    logger.warning("%s", error)
    return {"file": str(path), "error": str(error)}


def _diagnose_chunk(models, paths: Sequence[Path], out_dir: Path, stems: dict,
                    explain, options: dict) -> list[dict]:
    """Rows of ``paths`` in their order: read each, run every model once on the chunk."""
    rows: dict[str, dict] = {}
    read = []
    for path in paths:
        try:
            read.append((path, *_read(models, path)))
        except DataError as error:
            rows[str(path)] = _error_row(path, error)
    maps = models.segment_batch([original for _, original, _, _ in read])
    wholes = (models.whole_image_probabilities(np.stack([item[3] for item in read]))
              if read and models.whole_image is not None else [None] * len(read))
    diagnoses = []
    for (path, original, scale, _), probability_map, whole in zip(read, maps, wholes,
                                                                   strict=True):
        try:
            diagnosis = diagnose_image(
                original, lambda _image, m=probability_map: m, models.classify,
                models.class_names, models.classifier_size, threshold=models.threshold,
                min_area=max(1, round(options["min_area"] * scale ** 2)),
                merge_overlap=options["merge_overlap"],
                box_threshold=options["box_threshold"], whole_image=whole,
                whole_image_weight=options["whole_image_weight"],
                tumor_threshold=options["tumor_threshold"])
        except DataError as error:
            rows[str(path)] = _error_row(path, error)
            continue
        diagnoses.append((path, original, scale, whole, diagnosis))
    if explain is not None:
        explain_findings([f for *_, d in diagnoses for f in d.regions], models.class_names,
                         explain)
    for path, original, scale, whole, diagnosis in diagnoses:
        stem = stems[str(path)]
        panel = draw_panel(original, diagnosis, models.threshold)
        write_png(out_dir / "panels" / f"{stem}.png", panel)
        write_png(out_dir / "thumbs" / f"{stem}.png", _thumbnail(panel))
        row = {"file": str(path), "finding": diagnosis.finding,
               "probabilities": {k: round(v, 6) for k, v in diagnosis.probabilities.items()},
               "chain_probabilities": {k: round(v, 6) for k, v in
                                       diagnosis.chain_probabilities.items()},
               "regions": [f.to_dict(scale) for f in diagnosis.regions],
               "size": [int(round(original.shape[0] / scale)),
                        int(round(original.shape[1] / scale))],
               "panel": f"panels/{stem}.png", "thumbnail": f"thumbs/{stem}.png"}
        if whole is not None:
            row["whole_image_probabilities"] = {k: round(v, 6) for k, v in whole.items()}
        rows[str(path)] = row
    return [rows[str(path)] for path in paths]


#: Radiographs read, segmented and explained together: one model call per chunk instead of
#: per image (each call has a fixed cost that exceeds the compute of one 128-px U-Net pass,
#: and eager CAMs cost per layer, not per image; ``bench/diagnose_chain.py``).
DEFAULT_CHUNK_SIZE = 16


def diagnose_files(models, files: Sequence[Path], out_dir: str | Path,
                   min_area: int = DEFAULT_MIN_AREA,
                   merge_overlap: float = DEFAULT_MERGE_OVERLAP,
                   box_threshold: float | None = DEFAULT_BOX_THRESHOLD,
                   whole_image_weight: float = DEFAULT_WHOLE_IMAGE_WEIGHT,
                   cam_method: str = "gradcam++", cam_layer: str | None = None,
                   tumor_threshold: float | None = None,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[dict]:
    """Run the chain on ``files`` and write the outputs; returns every row (old and new).

    Args:
        models: :class:`bone_tumor_tf.diagnosis.models.ChainModels`.
        min_area: minimum region area in the file's own pixels.
        box_threshold: the level whose component spans each region's box (None: the
            region's own component; :mod:`bone_tumor_tf.diagnosis.regions`).
        cam_method: ``gradcam``, ``gradcam++`` or ``none`` (no heatmaps).
        tumor_threshold: operating point of each finding (None: the most probable class).
        chunk_size: radiographs per model call; the results do not depend on it. Rows are
            written chunk by chunk, so an interruption loses at most the unfinished chunk.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size={chunk_size}: must be >= 1")
    # before chain_settings.json records it, so a corrected rerun is not refused
    check_box_threshold(box_threshold)
    out_dir = Path(out_dir)
    # one run per folder at a time: two would append the same images twice
    with folder_lock(out_dir):
        (out_dir / "panels").mkdir(parents=True, exist_ok=True)
        (out_dir / "thumbs").mkdir(exist_ok=True)
        rows = read_results(out_dir)
        _check_settings(out_dir, chain_settings(models, min_area, merge_overlap, box_threshold),
                        bool(rows))
        done = {row["file"] for row in rows}
        # Output names from the whole batch, so that a rerun gives every file the same name.
        stems = dict(zip(map(str, files), unique_stems(list(files), separator="_"), strict=True))
        explain = None
        if cam_method != "none":
            explainer = CamExplainer(models.classifier, layer_name=cam_layer)

            def explain(crops, targets):
                return explainer(crops, method=cam_method, target_classes=targets)

        options = dict(min_area=min_area, merge_overlap=merge_overlap, box_threshold=box_threshold,
                       whole_image_weight=whole_image_weight, tumor_threshold=tumor_threshold)
        pending = [path for path in files if str(path) not in done]
        with open(out_dir / RESULTS_NAME, "a", encoding="utf-8") as results:
            for start in range(0, len(pending), int(chunk_size)):
                chunk = pending[start:start + int(chunk_size)]
                for row in _diagnose_chunk(models, chunk, out_dir, stems, explain, options):
                    results.write(json.dumps(row) + "\n")
                    rows.append(row)
                results.flush()
        notes = [f"{role}: {path}" for role, path in (models.paths or {}).items()]
        write_index(out_dir, [_case(row, out_dir) for row in rows], title="Diagnosis", notes=notes)
        return rows
