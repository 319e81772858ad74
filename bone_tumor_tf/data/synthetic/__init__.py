"""Synthetic radiograph datasets in the exact on-disk format of BTXRD (and of class folders).

The real BTXRD dataset cannot be downloaded everywhere, so demos and tests use data that
is laid out exactly like it but drawn from scratch. Nothing here comes from a patient.

``generate_btxrd`` writes::

    DIR/SYNTHETIC.txt              marker: synthetic data, never real patients, with the seed
    DIR/dataset.xlsx               the 37 columns of ``schema.SHEET_COLUMNS``, one row per image
    DIR/images/IMG000001.jpeg      8-bit grayscale radiograph-like JPEGs of varied sizes;
    DIR/images/IMG000021.jpg       ... about 1 % end in ``.jpg`` (see ``image_id``)
    DIR/Annotations/IMG000021.json LabelMe 5.2.1 JSON, one per tumor image only

``generate_folders`` writes a class-per-folder set (``DIR/normal/*.png|*.jpg``,
``DIR/cancer/...``) such as many public MRI/X-ray collections use.

Images show a dark background, a soft-tissue envelope, one long bone (bright cortex,
textured marrow; sometimes a thinner parallel bone) with film noise and blur. Tumor images
carry lesions at the bone: benign ones are small, round/oval, well defined, either lucent
with a thin sclerotic rim or sclerotic; malignant ones are larger, irregular, ill defined,
mixed lucent/sclerotic, with a periosteal reaction (sunburst spicules and/or a Codman
triangle). Each lesion's LabelMe polygon is exactly the outline that was filled, and its
rectangle is the polygon's bounding box (plus 0-3 px, clipped to the image).

Everything is a pure function of ``seed``: metadata comes from one generator, and image
``i`` is drawn from its own generator keyed by ``(seed, i)``.

Modules: :mod:`.sampling` (the sheet: patients, views, labels, sites), :mod:`.rendering`
(the images and lesion outlines), :mod:`.writing` (files, LabelMe JSON, sheet, marker).
Command: ``bone-tumor data synthetic``.
"""

from __future__ import annotations

from bone_tumor_tf.data.synthetic.rendering import render_radiograph
from bone_tumor_tf.data.synthetic.sampling import image_id, sample_metadata
from bone_tumor_tf.data.synthetic.writing import (
    MARKER_FILE_NAME,
    SHEET_FILE_NAME,
    generate_btxrd,
    generate_folders,
    is_synthetic_dataset,
)

__all__ = [
    "MARKER_FILE_NAME",
    "SHEET_FILE_NAME",
    "generate_btxrd",
    "generate_folders",
    "image_id",
    "is_synthetic_dataset",
    "render_radiograph",
    "sample_metadata",
]

