"""Instance ids on the host (NumPy only, so that the ONNX paths need no MindSpore import).

- ``dense_index(inst)``: (H, W) raw instance ids -> ((H, W) int32 ids renumbered 0..K-1 in
  ascending id order, the (K,) sorted original ids). The encoder's instance pooling and the edge
  map consume the renumbered map; ``ids[index]`` gives the raw ids back.
"""

import numpy as np


def dense_index(inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber instance ids 0..K-1 (host side). Returns (index int32 HxW, sorted ids (K,))."""
    ids, inverse = np.unique(np.asarray(inst), return_inverse=True)
    return inverse.reshape(np.shape(inst)).astype(np.int32), ids
