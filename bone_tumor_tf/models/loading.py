"""The toolkit's one model loader: safe deserialisation, one-line errors, the contract.

A leaf module (Keras, the errors and the contract only), so that every stage -- predict,
evaluate, Grad-CAM, training from an earlier run -- loads models the same way without
importing the others.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from bone_tumor_tf.errors import ModelFileError
from bone_tumor_tf.models.contract import attach_contract, read_contract

__all__ = ["load_model"]


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` model with ``safe_mode=True``, uncompiled, with its contract.

    The contract read from the file (see
    :func:`bone_tumor_tf.models.contract.read_contract`, which also reads the contracts
    of the previous version) is attached to the model, so ``read_contract(model)`` returns
    it; a file from elsewhere gets one inferred from its shapes when it is asked for.
    Training checkpoints load too (their optimizer state is not restored: resuming goes
    through the run folder's ``state/``).

    Returns:
        The uncompiled ``keras.Model``.

    Raises:
        ModelFileError: missing file, not a ``.keras`` archive, an invalid contract, or a
            file that needs unsafe deserialisation (a ``Lambda`` layer) or an unknown
            custom object.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: expected a .keras model file")
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as error:
        text = str(error)
        if "Lambda" in text or "safe_mode" in text:
            raise ModelFileError(f"{path}: refused to load: it contains a Lambda layer (arbitrary "
                                 "code); only models built from registered layers load "
                                 "safely") from None
        if "Could not locate" in text or "Unknown" in text:
            first = text.strip().splitlines()[0]
            raise ModelFileError(f"{path}: unknown custom object ({first[:200]})") from None
        raise ModelFileError(f"{path}: cannot load model ({text.splitlines()[0][:200]})") from None
    except Exception as error:  # zip/h5 errors of a damaged file
        raise ModelFileError(f"{path}: cannot load model ({type(error).__name__}: "
                             f"{str(error).splitlines()[0][:200] if str(error) else ''})") from None
    contract = read_contract(path)
    if contract is not None:
        attach_contract(model, contract)
    return model
