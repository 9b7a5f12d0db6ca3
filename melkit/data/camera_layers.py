"""The camera-simulation augmentation layers: Keras random layers, one per ``AugmentParams`` camera field.

Each draws its per-image values from its own seeded stateful generator, so two augmenters built with the
same seed augment alike. This module imports TensorFlow at its top: ``melkit.data.augment`` imports it only
when a recipe turns a camera field on.
"""

from __future__ import annotations

from melkit.util.tf import keras, tf

__all__ = ["LAYERS", "RandomBlur", "RandomGamma", "RandomHue", "RandomJpeg", "RandomLowres", "RandomNoise",
           "RandomSaturation", "RandomTemperature", "RandomVignette"]


class _PerImage(keras.__internal__.layers.BaseRandomLayer):
    """A random layer with one float ``amount``; draws per-image values from its own seeded generator."""

    def __init__(self, amount, seed=None, **kwargs):
        kwargs.setdefault("dtype", "float32")  # pow/JPEG in float16 would be wrong under mixed precision
        super().__init__(seed=seed, force_generator=True, rng_type="stateful", **kwargs)
        self.amount = float(amount)
        self.seed = seed

    def call(self, inputs, training=True):
        x = tf.cast(inputs, tf.float32)
        if not training:
            return x
        return tf.clip_by_value(self.apply(x), 0.0, 255.0)

    def uniform(self, x, lo, hi):
        """One value per image, shaped (B, 1, 1, 1)."""
        return self._random_generator.random_uniform([tf.shape(x)[0], 1, 1, 1], lo, hi, dtype=tf.float32)

    def coin(self, x, p=0.5):
        """Per image, 1.0 with probability p, else 0.0."""
        return tf.cast(self.uniform(x, 0.0, 1.0) < p, tf.float32)

    def get_config(self):
        return {**super().get_config(), "amount": self.amount, "seed": self.seed}


class RandomHue(_PerImage):
    """Rotates colours about the grey axis by up to ``amount`` of a full turn (greys stay grey)."""

    def apply(self, x):
        theta = 2.0 * 3.141592653589793 * self.uniform(x, -self.amount, self.amount)[:, 0, 0, 0]
        c, s = tf.cos(theta)[:, None, None], tf.sin(theta)[:, None, None]
        k = tf.constant([[1.0, 1.0, 1.0]]) / 3.0 ** 0.5
        cross = tf.constant([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / 3.0 ** 0.5
        # Rodrigues: R = cos I + sin [k]x + (1 - cos) k k^T, one 3x3 matrix per image
        rot = c * tf.eye(3)[None] + s * cross[None] + (1.0 - c) * tf.matmul(k, k, transpose_a=True)[None]
        return tf.einsum("bhwj,bij->bhwi", x, rot)


class RandomSaturation(_PerImage):
    """Scales each pixel's distance from its luma grey by a factor in [1 - amount, 1 + amount]."""

    def apply(self, x):
        f = self.uniform(x, 1.0 - self.amount, 1.0 + self.amount)
        grey = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
        return grey + f * (x - grey)


class RandomGamma(_PerImage):
    """255 (x / 255) ** gamma, gamma log-uniform in [1 / (1 + amount), 1 + amount]."""

    def apply(self, x):
        g = tf.math.log(1.0 + self.amount)
        gamma = tf.exp(self.uniform(x, -g, g))
        return 255.0 * tf.pow(tf.clip_by_value(x, 0.0, 255.0) / 255.0, gamma)


class RandomTemperature(_PerImage):
    """White balance: red gain 1 + t and blue gain 1 - t, t uniform in +-amount (warm > 0, cool < 0)."""

    def apply(self, x):
        t = self.uniform(x, -self.amount, self.amount)
        gains = tf.concat([1.0 + t, tf.ones_like(t), 1.0 - t], axis=-1)
        return x * gains


class RandomBlur(_PerImage):
    """Separable Gaussian blur, sigma uniform in (0, amount] pixels, on a random half of the images."""

    def apply(self, x):
        r = max(1, int(-(-3.0 * self.amount // 1)))  # kernel radius: 3 sigma
        sigma = self.uniform(x, 0.0, self.amount)[:, 0, 0, 0] * self.coin(x)[:, 0, 0, 0]
        sigma = tf.maximum(sigma, 1e-3)  # ~0 gives weights (1, 0, ...): the image unchanged
        offsets = tf.range(-r, r + 1, dtype=tf.float32)
        w = tf.exp(-(offsets[None] ** 2) / (2.0 * sigma[:, None] ** 2))
        w = w / tf.reduce_sum(w, axis=1, keepdims=True)  # (B, 2r + 1)
        h, wd = tf.shape(x)[1], tf.shape(x)[2]
        p = tf.pad(x, [[0, 0], [r, r], [0, 0], [0, 0]], mode="SYMMETRIC")
        x = tf.add_n([w[:, i, None, None, None] * p[:, i:i + h] for i in range(2 * r + 1)])
        p = tf.pad(x, [[0, 0], [0, 0], [r, r], [0, 0]], mode="SYMMETRIC")
        return tf.add_n([w[:, i, None, None, None] * p[:, :, i:i + wd] for i in range(2 * r + 1)])


class RandomNoise(_PerImage):
    """Additive Gaussian noise, per-image std uniform in [0, amount] (0..255 units)."""

    def apply(self, x):
        std = self.uniform(x, 0.0, self.amount)
        return x + std * self._random_generator.random_normal(tf.shape(x), dtype=tf.float32)


class RandomVignette(_PerImage):
    """A dermatoscope's circular field of view: the border outside a random circle darkened.

    Radius uniform in [0.9, 1.3] of the half-width (1 touches the edges, corners are at 1.41), with a
    soft 0.1-wide edge; darkening uniform in [0, amount] (1 = black), on a random half of the images.
    The centre is never touched; the corners always get the full darkening drawn.
    """

    def apply(self, x):
        strength = self.uniform(x, 0.0, self.amount) * self.coin(x)
        radius = self.uniform(x, 0.9, 1.3)
        h, w = tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)
        yy = (tf.range(h) + 0.5 - h / 2) / (h / 2)
        xx = (tf.range(w) + 0.5 - w / 2) / (w / 2)
        rho = tf.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2)[None, :, :, None]
        t = tf.clip_by_value((rho - radius) / 0.1, 0.0, 1.0)
        return x * (1.0 - strength * t * t * (3.0 - 2.0 * t))  # smoothstep edge


class RandomJpeg(_PerImage):
    """A random half of the images re-encoded as JPEG at quality uniform in [amount, 95]."""

    def apply(self, x):
        quality = tf.cast(tf.floor(self.uniform(x, self.amount, 96.0)[:, 0, 0, 0]), tf.int32)
        quality = tf.clip_by_value(quality, 1, 95)
        on = self.coin(x)[:, 0, 0, 0] > 0

        def one(args):
            image, q, do = args

            def encode():
                u8 = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
                return tf.cast(tf.image.adjust_jpeg_quality(u8, q), tf.float32)

            return tf.cond(do, encode, lambda: image)

        out = tf.map_fn(one, (x, quality, on), fn_output_signature=tf.float32)
        return tf.ensure_shape(out, x.shape)


class RandomLowres(_PerImage):
    """A random half of the images downscaled (area-averaged) to a side uniform in [amount, theirs) pixels,
    then resized back up bilinearly, as an image only at hand at low resolution reaches the model through
    the contract's resize. Images no larger than ``amount`` are left as they are."""

    def apply(self, x):
        side = tf.cast(tf.shape(x)[1], tf.float32)
        lo = tf.minimum(tf.constant(self.amount, tf.float32), side)
        small = tf.cast(tf.floor(self.uniform(x, 0.0, 1.0)[:, 0, 0, 0] * (side - lo) + lo), tf.int32)
        on = self.coin(x)[:, 0, 0, 0] > 0
        full = tf.shape(x)[1:3]

        def one(args):
            image, s, do = args

            def degrade():
                down = tf.image.resize(image, tf.stack([s, s]), method="area")
                return tf.image.resize(down, full, method="bilinear")

            return tf.cond(do, degrade, lambda: image)

        out = tf.map_fn(one, (x, small, on), fn_output_signature=tf.float32)
        return tf.ensure_shape(out, x.shape)


# The layer class of each camera field, by the field's name.
LAYERS = {
    "blur": RandomBlur, "vignette": RandomVignette, "temperature": RandomTemperature, "hue": RandomHue,
    "saturation": RandomSaturation, "gamma": RandomGamma, "noise": RandomNoise, "jpeg": RandomJpeg,
    "lowres": RandomLowres,
}
