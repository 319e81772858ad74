"""``index.html``: one self-contained page to review every diagnosed radiograph.

A table with one row per image: its thumbnail (linking to the full-size panel), the finding,
the normal / benign / malignant probabilities and the number of regions; files that could
not be read are listed with their one-line error. Rows start sorted by malignant probability
(highest first) and any column header re-sorts the table in the browser. Everything is
relative to the page's folder and inline (CSS, a few lines of JavaScript): the folder can be
copied or zipped and opened from disk, with no server and no network.

Each thumbnail records in ``data-loaded`` the width it decoded to (0 when the file is
missing), and a missing thumbnail is marked in red, so a broken output shows on the page.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from bone_tumor_tf.io import atomic_write_text

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: middle; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th:hover { background: #e6e6e6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img.thumb { max-width: 160px; max-height: 160px; display: block; }
img.broken { outline: 3px solid #c00; min-width: 60px; min-height: 40px; }
.malignant { color: #b00020; font-weight: 600; }
.benign { color: #a15c00; }
.normal { color: #1b5e20; }
.error { color: #b00020; }
"""

_SCRIPT = """
function sortBy(col, numeric) {
  const body = document.querySelector('#cases tbody');
  const rows = Array.from(body.rows);
  const header = document.querySelectorAll('#cases th')[col];
  const descending = header.dataset.order !== 'desc';
  document.querySelectorAll('#cases th').forEach(th => delete th.dataset.order);
  header.dataset.order = descending ? 'desc' : 'asc';
  rows.sort((a, b) => {
    const x = a.cells[col].dataset.value, y = b.cells[col].dataset.value;
    const c = numeric ? (parseFloat(x) - parseFloat(y)) : x.localeCompare(y);
    return descending ? -c : c;
  });
  rows.forEach(r => body.appendChild(r));
}
"""

_COLUMNS = (("image", False), ("thumbnail", False), ("finding", False), ("P(normal)", True),
            ("P(benign)", True), ("P(malignant)", True), ("regions", True))


def _probability_cells(probabilities: Mapping[str, float] | None) -> str:
    cells = []
    for name in ("normal", "benign", "malignant"):
        value = None if probabilities is None else probabilities.get(name)
        shown = "" if value is None else f"{value:.3f}"
        sort_key = -1.0 if value is None else value
        cells.append(f'<td class="num" data-value="{sort_key:.6f}">{shown}</td>')
    return "".join(cells)


def _case_row(case: Mapping) -> str:
    name = html.escape(str(case["image"]))
    if case.get("error"):
        return (f'<tr><td data-value="{name}">{name}</td><td data-value=""></td>'
                f'<td class="error" data-value="error">{html.escape(case["error"])}</td>'
                f'{_probability_cells(None)}<td class="num" data-value="-1"></td></tr>')
    panel = html.escape(Path(case["panel"]).as_posix(), quote=True)
    thumb = html.escape(Path(case["thumbnail"]).as_posix(), quote=True)
    finding = html.escape(str(case["finding"]))
    image = (f'<a href="{panel}"><img class="thumb" src="{thumb}" alt="{name}" '
             'data-loaded="" onload="this.dataset.loaded=this.naturalWidth" '
             'onerror="this.dataset.loaded=0;this.classList.add(\'broken\')"></a>')
    regions = int(case.get("regions", 0))
    return (f'<tr><td data-value="{name}"><a href="{panel}">{name}</a></td>'
            f'<td data-value="">{image}</td>'
            f'<td class="{finding}" data-value="{finding}">{finding}</td>'
            f'{_probability_cells(case.get("probabilities"))}'
            f'<td class="num" data-value="{regions}">{regions}</td></tr>')


def write_index(out_dir: str | Path, cases: Sequence[Mapping], title: str = "Diagnosis",
                notes: Sequence[str] = ()) -> Path:
    """Write ``out_dir/index.html`` for ``cases`` and return its path.

    Args:
        cases: one mapping per image: ``image`` (name shown), and either ``error`` (one
            line) or ``panel`` and ``thumbnail`` (paths relative to ``out_dir``),
            ``finding`` (``normal`` / ``benign`` / ``malignant``), ``probabilities``
            (class -> probability) and ``regions`` (count).
        notes: lines shown under the title (e.g. the models used).
    """
    out_dir = Path(out_dir)
    for case in cases:
        for key in ("panel", "thumbnail"):
            if case.get(key) is not None and Path(case[key]).is_absolute():
                raise ValueError(f"{case['image']}: {key} must be relative to {out_dir}")
    ordered = sorted(cases, key=lambda c: -((c.get("probabilities") or {}).get("malignant", -1.0)))
    headers = "".join(
        f'<th onclick="sortBy({i}, {str(numeric).lower()})">{html.escape(label)}</th>'
        for i, (label, numeric) in enumerate(_COLUMNS))
    rows = "\n".join(_case_row(case) for case in ordered)
    note_html = "".join(f"<p>{html.escape(line)}</p>" for line in notes)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{html.escape(title)}</title><style>{_STYLE}</style>'
            f'<script>{_SCRIPT}</script></head><body>'
            f'<h1>{html.escape(title)}</h1>{note_html}'
            f'<p>{len(cases)} images; click a column header to sort, a thumbnail to open '
            f'its full-size panel.</p>'
            f'<table id="cases"><thead><tr>{headers}</tr></thead><tbody>\n{rows}\n'
            f'</tbody></table></body></html>\n')
    path = out_dir / "index.html"
    atomic_write_text(path, page)
    return path
