"""Training-only augmentation, applied to batches of resized uint8 images (0..255 floats out).

Dermoscopy has no "up": any rotation or mirror image of a lesion is as plausible as the original, so
flips and full rotations are safe. Zoom stands in for dermatoscope distance; mild colour jitter for
lighting and camera differences. Nothing here runs on val/test or at export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class AugmentParams:
    flip: bool = True
    rotation: float = 0.5  # fraction of a full turn either way (0.5 = any angle)
    zoom: float = 0.15  # +- fraction
    brightness: float = 0.1  # +- fraction of the range
    contrast: float = 0.1  # +- fraction

    def to_dict(self):
        return asdict(self)


def build_augmenter(params: AugmentParams, seed: int = 0):
    """A Keras model of random layers; call it on a float batch in 0..255."""
    from melkit.core.tf import keras  # TensorFlow: imported when first needed

    layers = []
    if params.flip:
        layers.append(keras.layers.RandomFlip("horizontal_and_vertical", seed=seed))
    if params.rotation:
        layers.append(keras.layers.RandomRotation(params.rotation, fill_mode="reflect", seed=seed + 1))
    if params.zoom:
        layers.append(keras.layers.RandomZoom(params.zoom, fill_mode="reflect", seed=seed + 2))
    if params.contrast:
        layers.append(keras.layers.RandomContrast(params.contrast, seed=seed + 3))
    if params.brightness:
        layers.append(keras.layers.RandomBrightness(params.brightness, value_range=(0, 255), seed=seed + 4))
    model = keras.Sequential(layers, name="augment")

    def augment(x):
        import tensorflow as tf  # melkit.core.tf has set up Keras 2 already

        return model(tf.cast(x, tf.float32), training=True)

    return augment
