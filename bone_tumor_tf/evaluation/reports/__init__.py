"""Markdown reports: :mod:`.markdown` (shared formatting), :mod:`.classification`,
:mod:`.segmentation`."""
