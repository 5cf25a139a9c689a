"""Pre- and post-processing the device runner times around inference (numpy only).

Pre: raw uint8 images at the model size (NHWC or NCHW) → float32 NCHW, `x * scale`, then
`(x - mean) / std` per channel, from the manifest's `preprocess`. Post: logits → softmax → top-1.
Resizing is left to the image source (camera, decoder), which differs per device.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def make_preprocess(preprocess: dict[str, Any]) -> Any:
    """A function raw uint8 batch → normalised float32 NCHW batch, for the manifest's `preprocess` dict."""
    channels = int(preprocess["channels"])
    scale = float(preprocess.get("scale", 1 / 255))
    # Folded once: (x * scale - mean) / std == x * (scale / std) - mean / std.
    mul = (scale / np.asarray(preprocess["std"], np.float32)).reshape(1, channels, 1, 1)
    add = (-np.asarray(preprocess["mean"], np.float32) / np.asarray(preprocess["std"], np.float32)).reshape(
        1, channels, 1, 1
    )

    def run(raw: np.ndarray) -> np.ndarray:
        x = raw if raw.shape[1] == channels else raw.transpose(0, 3, 1, 2)  # NHWC → NCHW
        return np.ascontiguousarray(x.astype(np.float32) * mul + add)

    return run


def postprocess(output: Any) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 class and its softmax probability per image, from a runtime's raw output (first tensor)."""
    logits = np.asarray(output[0] if isinstance(output, (list, tuple)) else output, dtype=np.float32)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    top = probs.argmax(axis=1)
    return top, probs[np.arange(len(top)), top]
