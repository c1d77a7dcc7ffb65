"""Small pyarrow helpers of the data checks: flags from a boolean column, text types."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def flags(arr: pa.ChunkedArray | pa.Array, null: bool) -> np.ndarray:
    """A boolean column as a numpy array, nulls read as ``null``."""
    return np.asarray(pc.fill_null(arr, null).to_numpy(zero_copy_only=False), dtype=bool)


def is_text(typ: pa.DataType) -> bool:
    """Whether a column of type ``typ`` holds text (or only nulls)."""
    return pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ)


__all__ = ["flags", "is_text"]
