"""Intermediate activations of a float model on calibration images, batch by batch.

Range equalisation (per-channel maxima) and QAT's range initialisation (per-layer min/max) both need them;
one probe model returns every requested layer's output in a single forward pass per batch.
"""

from __future__ import annotations

from melkit.data.contract import normalize
from melkit.util.progress import progress_bar


def layer_batches(model, layers, images_q, batch_size: int = 32, desc: str = "probing"):
    """Yield, for each batch of contract images (uint8 q), the numpy outputs of ``layers`` in order."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    probe = keras.Model(model.input, [layer.output for layer in layers])
    with progress_bar(total=len(images_q), desc=desc, unit="img") as bar:
        for start in range(0, len(images_q), batch_size):
            outs = probe(normalize(images_q[start:start + batch_size]), training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            yield [y.numpy() for y in outs]
            bar.update(min(batch_size, len(images_q) - start))
