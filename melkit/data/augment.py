"""Training-only augmentation, applied to batches of resized uint8 images (0..255 floats out).

Dermoscopy has no "up": any rotation or mirror image of a lesion is as plausible as the original, so
flips and full rotations are safe. Zoom stands in for dermatoscope distance; mild colour jitter for
lighting and camera differences. Nothing here runs on val/test or at export.

The camera fields (all off by default) simulate other dermatoscopes and phone cameras, so a model
trained on one clinic's images transfers to others: white balance (``temperature``), colour rendering
(``hue``, ``saturation``, ``gamma``), optics (``blur``, ``vignette``: the dark circular border of a
dermatoscope's field of view), sensor noise (``noise``) and compression (``jpeg``). They run after the
geometric and brightness/contrast layers, in the order light meets a camera: blur, vignette,
temperature, hue, saturation, gamma, noise, jpeg. A random-resized-crop ``scale`` is left out: the
``zoom`` field (RandomZoom, with reflected borders) already varies the lesion's scale.

Every random draw comes from a seeded stateful generator per layer, so two augmenters built with the
same seed give the same outputs on the same sequence of batches (the pipeline maps the augmenter with
one call at a time).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class AugmentParams:
    flip: bool = True
    rotation: float = 0.5  # fraction of a full turn either way (0.5 = any angle)
    zoom: float = 0.15  # +- fraction; also covers scale changes (no separate random-resized crop)
    brightness: float = 0.1  # +- fraction of the range
    contrast: float = 0.1  # +- fraction
    # Camera / dermatoscope simulation, per image; 0 = off.
    hue: float = 0.0  # max hue rotation, fraction of the hue circle either way (0.02 = +-7 degrees)
    saturation: float = 0.0  # +- fraction: colour scaled away from/towards grey by 1 +- this
    gamma: float = 0.0  # gamma in [1/(1+g), 1+g], log-uniform
    temperature: float = 0.0  # white balance: red gain 1+t, blue gain 1-t, t in +-this (warm/cool)
    blur: float = 0.0  # max Gaussian blur sigma in pixels, on a random half of the images
    jpeg: int = 0  # min JPEG quality (1..95): a random half re-encoded at quality in [jpeg, 95]
    noise: float = 0.0  # max std of additive Gaussian sensor noise, 0..255 units
    vignette: float = 0.0  # max darkening of a dermatoscope's circular border (1 = black), random half
    # Low resolution: a random half downscaled to a side in [lowres, the image's) pixels and back (0 = off). A
    # source only at hand downscaled (BCN20000 at 84 px) is blurry after the contract's resize: without this,
    # blur itself becomes a cue for that source's labels. In pixels, so one recipe means the same at any size.
    lowres: int = 0

    def to_dict(self):
        return asdict(self)

    @classmethod
    def camera(cls, **overrides) -> "AugmentParams":
        """Moderate cross-device settings (the defaults plus camera simulation), for an ablation.

        The values stay within what real devices differ by, so the lesion's own colour cues (blue-white
        veil, regression, pigment network) survive: hue 0.02 is +-7 degrees, a white-balance miss rather
        than a new colour; saturation and gamma 0.2 span typical phone vs. dermatoscope tone curves;
        temperature 0.1 is roughly a 3000 K..6500 K white-balance error; blur sigma up to 1 px is mild
        defocus at 224 px; JPEG quality down to 50 covers messaging/PACS re-encoding; noise std up to
        4/255 is a phone sensor in dim light; vignette 0.5 half-darkens the corners (a contact
        dermatoscope's field of view, without hiding lesions that touch the border).
        """
        values = dict(hue=0.02, saturation=0.2, gamma=0.2, temperature=0.1, blur=1.0, jpeg=50, noise=4.0,
                      vignette=0.5)
        values.update(overrides)
        return cls(**values)


def _check(params: AugmentParams):
    for name in ("rotation", "zoom", "brightness", "contrast", "hue", "saturation", "gamma", "temperature",
                 "blur", "jpeg", "noise", "vignette", "lowres"):
        if getattr(params, name) < 0:
            raise ValueError(f"augment.{name} must be >= 0, got {getattr(params, name)}")
    if params.jpeg and not 1 <= params.jpeg <= 95:
        raise ValueError(f"augment.jpeg is a minimum JPEG quality in 1..95 (0 = off), got {params.jpeg}")
    for name in ("saturation", "temperature", "vignette"):
        if getattr(params, name) > 1:
            raise ValueError(f"augment.{name} must be <= 1, got {getattr(params, name)}")
    if params.lowres and params.lowres < 2:
        raise ValueError(f"augment.lowres is the smallest side in pixels, at least 2 (0 = off), got {params.lowres}")


# Camera layers in application order, each with its seed offset from build_augmenter's seed (new layers go
# last, so that the others keep their seeds and a recipe without them augments exactly as before).
CAMERA_ORDER = ("blur", "vignette", "temperature", "hue", "saturation", "gamma", "noise", "jpeg", "lowres")


def build_augmenter(params: AugmentParams, seed: int = 0):
    """A Keras model of random layers; call it on a float batch in 0..255."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    _check(params)
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
    if any(getattr(params, name) for name in CAMERA_ORDER):
        from melkit.data.camera_layers import LAYERS  # TensorFlow: the layers subclass Keras' random layer
        for i, name in enumerate(CAMERA_ORDER):
            if getattr(params, name):
                layers.append(LAYERS[name](getattr(params, name), seed=seed + 5 + i, name=f"random_{name}"))
    model = keras.Sequential(layers, name="augment")

    def augment(x):
        import tensorflow as tf  # melkit.util.tf has set up Keras 2 already

        return model(tf.cast(x, tf.float32), training=True)

    augment.model = model  # the layers, for inspection
    return augment
