"""The review page as a person sees it: opened from disk in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from bone_tumor_tf.diagnosis.page import write_index

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cases(out_dir, n=4):
    (out_dir / "thumbs").mkdir(parents=True)
    (out_dir / "panels").mkdir()
    cases = []
    for i in range(n):
        image = np.full((40 + 10 * i, 90, 3), 30 * i, np.uint8)
        cv2.imwrite(str(out_dir / "thumbs" / f"case{i}.png"), image)
        cv2.imwrite(str(out_dir / "panels" / f"case{i}.png"), image)
        malignant = [0.2, 0.9, 0.05, 0.6][i]
        cases.append({"image": f"case{i}.jpeg", "panel": f"panels/case{i}.png",
                      "thumbnail": f"thumbs/case{i}.png", "regions": i,
                      "finding": "malignant" if malignant > 0.5 else "benign",
                      "probabilities": {"normal": 0.1, "benign": 0.9 - malignant,
                                        "malignant": malignant}})
    cases.append({"image": "broken.dcm", "error": "broken.dcm: not a DICOM file"})
    return cases


def test_page_lists_every_case_sorted_by_malignant_probability(tmp_path):
    page = write_index(tmp_path, _cases(tmp_path), notes=["segmenter: seg.keras"])
    text = page.read_text()
    order = re.findall(r'<tr><td data-value="([^"]+)"', text)
    assert order == ["case1.jpeg", "case3.jpeg", "case0.jpeg", "case2.jpeg", "broken.dcm"]
    assert "broken.dcm: not a DICOM file" in text
    assert 'href="panels/case1.png"' in text
    # self-contained: no absolute paths, no network
    assert str(tmp_path) not in text and "http" not in text


def test_absolute_paths_are_refused(tmp_path):
    case = {"image": "a.png", "panel": str(tmp_path / "a.png"), "thumbnail": "t.png",
            "finding": "normal", "probabilities": {}, "regions": 0}
    with pytest.raises(ValueError, match="panel must be relative"):
        write_index(tmp_path, [case])


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                    "(Debian package 'chromium'; .ci/run installs it)")
def test_every_thumbnail_loads_in_headless_chromium(tmp_path):
    cases = _cases(tmp_path)
    (tmp_path / "thumbs" / "case2.png").unlink()  # a missing thumbnail must show as broken
    page = write_index(tmp_path, cases)
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    loaded = dict(re.findall(r'alt="([^"]+)"[^>]*data-loaded="(\d*)"', dom))
    assert loaded == {"case0.jpeg": "90", "case1.jpeg": "90", "case2.jpeg": "0",
                      "case3.jpeg": "90"}
    tags = {re.search(r'alt="([^"]+)"', tag).group(1): tag for tag in re.findall(r"<img [^>]*>", dom)}
    assert 'class="thumb broken"' in tags["case2.jpeg"]
    assert 'class="thumb"' in tags["case1.jpeg"]
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--window-size=1000,700", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (700, 1000)
    assert image.std() > 5  # the page rendered content, not a blank canvas
