"""bone_tumor_tf: train, evaluate and explain deep-learning models for primary bone tumors.

Pipeline map: ``data`` -> ``models`` -> ``training`` -> ``evaluation`` -> ``explain``.
"""

__version__ = "0.1.0"
