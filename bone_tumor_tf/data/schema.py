"""The BTXRD on-disk schema: sheet columns, their groups, and the class names.

BTXRD (Yao et al., 2025, "A radiograph dataset for the classification, localization,
and segmentation of primary bone tumors", Scientific Data 12:88) ships a metadata sheet
``dataset.xlsx`` with exactly the 37 columns below, spelled as here (spaces and hyphens
matter). ``image_id`` carries the file extension; every other column except ``center``,
``age`` and ``gender`` is a 0/1 indicator.
"""

from __future__ import annotations

IMAGE_ID = "image_id"
DEMOGRAPHIC_COLUMNS = ("center", "age", "gender")
SITE_COLUMNS = (
    "hand", "ulna", "radius", "humerus", "foot", "tibia", "fibula", "femur", "hip bone",
    "ankle-joint", "knee-joint", "hip-joint", "wrist-joint", "elbow-joint", "shoulder-joint",
)
LABEL_COLUMNS = ("tumor", "benign", "malignant")
BENIGN_SUBTYPES = (
    "osteochondroma", "multiple osteochondromas", "simple bone cyst", "giant cell tumor",
    "osteofibroma", "synovial osteochondroma", "other bt",
)
MALIGNANT_SUBTYPES = ("osteosarcoma", "other mt")
SUBTYPE_COLUMNS = BENIGN_SUBTYPES + MALIGNANT_SUBTYPES
REGION_COLUMNS = ("upper limb", "lower limb", "pelvis")
VIEW_COLUMNS = ("frontal", "lateral", "oblique")

SHEET_COLUMNS = (
    (IMAGE_ID,) + DEMOGRAPHIC_COLUMNS + SITE_COLUMNS + LABEL_COLUMNS + SUBTYPE_COLUMNS
    + REGION_COLUMNS + VIEW_COLUMNS
)
assert len(SHEET_COLUMNS) == 37

#: Three-class task, in label-index order.
CLASS_NAMES = ("normal", "benign", "malignant")
#: Binary task (tumor vs normal), in label-index order: index 1 is the positive class.
BINARY_CLASS_NAMES = ("normal", "tumor")

CENTERS = (1, 2, 3)
GENDERS = ("M", "F")
