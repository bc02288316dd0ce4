"""The seed's quadtree as it stands in the design: a Python queue and ``region.var()`` per square.

Kept as the speed and correctness baseline for ``adapatch.quadtree`` (importance="variance",
threshold scaled by 4 because adapatch normalises the variance of [0, 1] values by 0.25).
"""

from __future__ import annotations

from collections import deque

import numpy as np


def seed_quadtree(image: np.ndarray, threshold: float, min_size: int = 8, max_size: int = 32) -> np.ndarray:
    """Boxes ``[N, 3]`` (row-major) of the seed algorithm; sides must be multiples of max_size."""
    h, w = image.shape[:2]
    queue = deque((y, x, max_size) for y in range(0, h, max_size) for x in range(0, w, max_size))
    boxes = []
    while queue:
        y, x, size = queue.popleft()
        region = image[y:y + size, x:x + size]
        if region.var() > threshold and size > min_size:
            half = size // 2
            queue.append((y, x, half))
            queue.append((y, x + half, half))
            queue.append((y + half, x, half))
            queue.append((y + half, x + half, half))
        else:
            boxes.append((y, x, size))
    b = np.array(boxes, dtype=np.int64)
    return b[np.lexsort((b[:, 1], b[:, 0]))]
