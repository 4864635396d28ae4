"""Per-example clipping: the bound every mechanism puts on one example's contribution before release."""

from __future__ import annotations

import numpy as np


def clip(g: np.ndarray, c: float | None) -> tuple[np.ndarray, float]:
    """Per-example clip g_i·min(1, c/|g_i|); returns the clipped values and the fraction clipped."""
    if c is None or c <= 0:
        return g, 0.0
    over = np.abs(g) > c
    return np.clip(g, -c, c), float(over.mean()) if g.size else 0.0


def clip_rows(v: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """Scale each row v_i by min(1, C/‖v_i‖₂); returns the clipped rows and the fraction that were scaled."""
    if v.shape[0] == 0:
        return v, 0.0
    norms = np.linalg.norm(v, axis=1)
    scale = c / np.maximum(norms, c)
    return v * scale[:, None], float((norms > c).mean())
