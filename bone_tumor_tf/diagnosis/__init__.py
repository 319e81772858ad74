"""Diagnosis of a new radiograph: the U-Net proposes tumors, the crop classifier reads them.

* :mod:`.regions`: connected components of the segmentation map -> scored boxes.
"""
