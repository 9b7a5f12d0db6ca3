"""The input-domain guard (``melkit convert --domain-guard``): does an image look like a dermoscopic lesion image?

A second output ``domain_score`` (shape [1, 1]) is built into the exported model, beside ``[P(nv), P(mel)]``
(which stays output 0, so MediaPipe and the TFLite Task library still classify with it). It is a Mahalanobis
distance of the image's pooled features to the run's training images:

    m_j   = mean over positions of the output of layer j         (j in LAYERS: three MobileNetV2 blocks)
    z     = sum_j m_j W_j  +  b         with b = -mu W          (Dense layers: the whitening, fitted here)
    score = mean over the k components of z * z                 (Multiply, then a Dense with weights 1/k)

``mu`` is the mean of the concatenated m on the training split and ``W`` whitens its covariance (eigen-
decomposition, ridge ``shrinkage`` times the mean eigenvalue so that directions without variance do not
explode, the first ``components`` principal directions, all by default). On training images the score is
about 1 per component on average; the threshold is the ``quantile`` of the validation split's scores. An
image is in the model's domain when its score is at most the threshold; otherwise the app and ``melkit
predict`` give no melanoma score ("not assessed").

``balance`` (``--domain-guard-balance``): fitted on every training image alike ("none"), the mean and the
covariance are mostly those of the largest group, nevi of the largest source; melanomas, atypical by nature,
and the smaller sources then sit far from that mean, and a guard that drops them drops the lesions that
matter. "class" and "class-source" weight each group (class, or class and source) equally in the mean and the
covariance, and take the threshold as the highest of the groups' validation quantiles, so that each group
keeps at least ``quantile`` of its validation images in the domain.

Why these layers and not the classifier's own pooled features: on the final 1280 features a fine-tuned
classifier maps noise, flat colours, text and photographs *closer* to the dermoscopy mean than many real
lesions (the whitened distance of out-of-domain images is below the validation median), while the pooled
outputs of the middle blocks (block_9_add, block_12_add, block_15_add: textures and colours before the
nv-vs-mel head discards them) separate them. These outputs are linear (no ReLU6), so range equalisation and
weight rounding, which rescale ReLU6 channels and the convolutions after them, leave them unchanged, and the
classifier branch is converted exactly as without the guard.

The int8 model quantizes the guard's tensors from the calibration images, whose scores stay far below those
of out-of-domain images: :func:`widen_ranges` then sets the ranges of z (+-Z_RANGE), z*z and the score
(0..SCORE_RANGE times the threshold) in the flatbuffer, so the quantized score still reaches past the
threshold. On the 2.0.0 release run the calibrated ranges (or +-4) cut out-of-domain scores by a third
(radial gradients passed); with +-12 the int8 score follows the float one (mean difference 1 % of the
threshold on validation) and flags the same images. Numbers: benchmarks/README.md ("domain_guard.py"). TFLite's converter orders a model's outputs by name; :func:`order_outputs` puts the probabilities
first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ai_edge_litert import schema_py_generated as tfl

from melkit.data.contract import normalize
from melkit.util.errors import BadInputError
from melkit.util.progress import progress_bar

LAYERS = ("block_9_add", "block_12_add", "block_15_add")
SCORE_NAME = "domain_score"
METHOD = "mahalanobis"
BALANCES = ("none", "class", "class-source")  # what the fit weights equally (module docstring)
Z_RANGE = 12.0  # int8 range of each whitened component: +-12 (a narrower one clips what out-of-domain images reach)
SCORE_RANGE = 4.0  # int8 range of the score: 0 .. 4 x the threshold


@dataclass
class DomainGuard:
    """A fitted guard: what the model computes and the threshold chosen on validation."""

    layers: tuple
    dims: tuple  # feature count of each layer
    mean: np.ndarray  # (D,)
    projection: np.ndarray  # (D, k): whitening
    shrinkage: float
    quantile: float
    threshold: float
    n_fit: int
    val_in_domain: float  # the float model's in-domain rate on the validation split
    balance: str = "none"  # BALANCES: the groups weighted equally in the fit and the threshold
    val_in_domain_by_group: dict | None = None  # group name -> the float model's in-domain rate (balanced fits)

    @property
    def components(self) -> int:
        return int(self.projection.shape[1])

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The score of each row of pooled features (float64), as the model computes it."""
        z = (np.asarray(features, np.float64) - self.mean) @ self.projection
        return np.mean(z * z, axis=1)


def _model_layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        raise BadInputError(f"--domain-guard: the model has no layer {name!r} (a MobileNetV2 block)") from None


def pooled_features(model, images_q, layers=LAYERS, batch_size=32, desc="guard features") -> np.ndarray:
    """(N, D) float64: the spatial mean of each layer's output, concatenated, for contract images (uint8 q)."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    outs = [keras.layers.GlobalAveragePooling2D()(_model_layer(model, n).output) for n in layers]
    probe = keras.Model(model.input, outs)
    parts = []
    with progress_bar(total=len(images_q), desc=desc, unit="img") as bar:
        for start in range(0, len(images_q), batch_size):
            ys = probe.predict_on_batch(normalize(images_q[start:start + batch_size]))
            ys = ys if isinstance(ys, (list, tuple)) else [ys]
            parts.append(np.concatenate([np.asarray(y, np.float64) for y in ys], axis=1))
            bar.update(min(batch_size, len(images_q) - start))
    return np.concatenate(parts)


def group_names(records, balance: str) -> list | None:
    """Each record's group under ``balance`` ("mel", "bcn20000/nv", ...); None for "none"."""
    if balance not in BALANCES:
        raise BadInputError(f"unknown guard balance {balance!r}: one of {', '.join(BALANCES)}")
    if balance == "none":
        return None
    label = ("nv", "mel")
    return [(f"{r.source}/" if balance == "class-source" and r.source else "") + label[int(r.label)] for r in records]


def _equal_group_weights(groups, n: int) -> np.ndarray:
    """Weights summing to 1 in which every group counts alike (uniform without groups)."""
    if groups is None:
        return np.full(n, 1.0 / n)
    g = np.asarray(groups, dtype=object)
    if len(g) != n:
        raise ValueError(f"{len(g)} group names for {n} feature rows")
    names, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    return 1.0 / (len(names) * counts[inverse])


def fit(train_features, val_features, layers, dims, components=None, shrinkage=0.1,
        quantile=0.995, train_groups=None, val_groups=None, balance="none") -> DomainGuard:
    """Mean and whitening from the training features; the threshold at ``quantile`` of the validation scores.

    With groups (``balance`` other than "none": one group name per row, :func:`group_names`), every group
    weighs alike in the mean and the covariance, and the threshold is the highest of the groups' validation
    quantiles."""
    x = np.asarray(train_features, np.float64)
    n, d = x.shape
    if n < 2:
        raise BadInputError("--domain-guard needs at least 2 training images")
    w = _equal_group_weights(train_groups, n)
    mean = w @ x
    cov = np.cov(x, rowvar=False, aweights=w).reshape(d, d)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    ridge = shrinkage * max(float(values.mean()), 1e-12)
    k = d if components is None else min(int(components), d)
    projection = vectors[:, :k] / np.sqrt(values[:k] + ridge)
    guard = DomainGuard(tuple(layers), tuple(int(v) for v in dims), mean, projection, float(shrinkage),
                        float(quantile), 0.0, n, 0.0, balance=balance)
    val = guard.scores(val_features)
    if val_groups is None:
        guard.threshold = float(np.quantile(val, quantile))
    else:
        g = np.asarray(val_groups, dtype=object)
        names = sorted(set(g.tolist()))
        guard.threshold = max(float(np.quantile(val[g == name], quantile)) for name in names)
        guard.val_in_domain_by_group = {name: float(np.mean(val[g == name] <= guard.threshold)) for name in names}
    guard.val_in_domain = float(np.mean(val <= guard.threshold))
    return guard


def fit_on_images(model, train_q, val_q, components=None, shrinkage=0.1, quantile=0.995,
                  layers=LAYERS, train_groups=None, val_groups=None, balance="none") -> DomainGuard:
    """:func:`fit` on the pooled features ``model`` (the float export model) gives for the images."""
    dims = [int(_model_layer(model, n).output.shape[-1]) for n in layers]
    train = pooled_features(model, train_q, layers, desc="guard: training images")
    val = pooled_features(model, val_q, layers, desc="guard: validation images")
    return fit(train, val, layers, dims, components, shrinkage, quantile, train_groups, val_groups, balance)


def with_domain_guard(model, guard: DomainGuard):
    """``model`` (image -> [P(nv), P(mel)]) with the guard as a second output: image -> [probabilities, score]."""
    from melkit.util.tf import keras  # TensorFlow: imported when first needed

    L = keras.layers
    bias = -(guard.mean @ guard.projection)
    parts, start = [], 0
    for j, (name, dim) in enumerate(zip(guard.layers, guard.dims)):
        pooled = L.GlobalAveragePooling2D(name=f"domain_pool_{j}")(_model_layer(model, name).output)
        dense = L.Dense(guard.components, use_bias=j == 0, name=f"domain_project_{j}")
        part = dense(pooled)
        w = guard.projection[start:start + dim].astype(np.float32)
        dense.set_weights([w, bias.astype(np.float32)] if j == 0 else [w])
        parts.append(part)
        start += dim
    z = L.Add(name="domain_z")(parts) if len(parts) > 1 else parts[0]
    squares = L.Multiply(name="domain_squares")([z, z])
    mean = L.Dense(1, use_bias=False, name=SCORE_NAME)
    score = mean(squares)
    mean.set_weights([np.full((guard.components, 1), 1.0 / guard.components, np.float32)])
    return keras.Model(model.input, [model.output, score], name=model.name)


def keras_outputs(model, images_q, batch_size=64) -> tuple[np.ndarray, np.ndarray]:
    """(P(mel), score) of the Keras guard model, batch by batch."""
    p, s = [], []
    for start in range(0, len(images_q), batch_size):
        probs, score = model.predict_on_batch(normalize(images_q[start:start + batch_size]))
        p.append(np.asarray(probs, np.float64)[:, 1])
        s.append(np.asarray(score, np.float64)[:, 0])
    return np.concatenate(p), np.concatenate(s)


# --- the flatbuffer ---------------------------------------------------------------------------------------------


def _opcode(model, op) -> int:
    code = model.OperatorCodes(op.OpcodeIndex())
    return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())


def _signature_outputs(model) -> dict:
    """Signature output name -> tensor index (subgraph 0)."""
    out = {}
    for i in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(i)
        for j in range(sig.OutputsLength()):
            m = sig.Outputs(j)
            out[m.Name().decode()] = m.TensorIndex()
    return out


def order_outputs(data: bytes, first: str = "probabilities", second: str = SCORE_NAME) -> bytes:
    """The model with its subgraph outputs ordered [``first``, ``second``] (by signature name), in place."""
    buf = bytearray(data)
    model = tfl.Model.GetRootAs(buf, 0)
    named = _signature_outputs(model)
    if first not in named or second not in named:
        raise BadInputError(f"the converted model has no outputs named {first!r} and {second!r}: {sorted(named)}")
    outputs = model.Subgraphs(0).OutputsAsNumpy()  # a view into buf: writing edits the model
    if sorted(outputs.tolist()) != sorted([named[first], named[second]]):
        raise BadInputError(f"unexpected outputs {outputs.tolist()} of the converted model")
    outputs[:] = [named[first], named[second]]
    return bytes(buf)


def _producers(graph) -> dict:
    """Tensor index -> the operator that writes it."""
    out = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for t in op.OutputsAsNumpy():
            out[int(t)] = op
    return out


def _set_range(tensor, lo: float, hi: float) -> dict | None:
    """Set an int8/uint8 tensor's per-tensor scale and zero point to cover [lo, hi]; None if it has none."""
    q = tensor.Quantization()
    if q is None or q.ScaleLength() != 1:
        return None
    signed = tensor.Type() == tfl.TensorType.INT8
    if not signed and tensor.Type() != tfl.TensorType.UINT8:
        return None
    qmin = -128 if signed else 0
    scale = np.float32((hi - lo) / 255.0)
    zero = int(np.clip(round(qmin - lo / float(scale)), qmin, qmin + 255))
    scales, zeros = q.ScaleAsNumpy(), q.ZeroPointAsNumpy()
    before = {"scale": float(scales[0]), "zero_point": int(zeros[0])}
    scales[0], zeros[0] = scale, zero
    return {"tensor": tensor.Name().decode(), "before": before,
            "after": {"scale": float(scales[0]), "zero_point": int(zeros[0])}, "range": [lo, hi]}


def widen_ranges(data: bytes, threshold: float, output_index: int = 1) -> tuple[bytes, list | None]:
    """The int8 guard with the ranges of its tensors set (module docstring); float models come back as they are.

    Walks back from the guard output: QUANTIZE (output type) <- FULLY_CONNECTED (mean of squares) <- MUL (z*z)
    <- ADD (sum of the parts) <- FULLY_CONNECTED (whitening, from a MEAN). Returns what changed, or None.
    """
    buf = bytearray(data)
    model = tfl.Model.GetRootAs(buf, 0)
    graph = model.Subgraphs(0)
    producers = _producers(graph)
    op_name = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}
    score_hi = SCORE_RANGE * float(threshold)
    changes = []

    ranges = {"score": (0.0, score_hi), "squares": (0.0, Z_RANGE ** 2), "z": (-Z_RANGE, Z_RANGE)}
    # (role of a tensor, the op that writes it) -> roles of that op's inputs to follow (activations only)
    steps = {("score", "QUANTIZE"): ("score",), ("score", "DEQUANTIZE"): ("score",),
             ("score", "FULLY_CONNECTED"): ("squares",), ("squares", "MUL"): ("z",), ("z", "ADD"): ("z", "z"),
             ("z", "FULLY_CONNECTED"): ()}  # the whitening reads the pooled features, whose range stays

    def visit(tensor_index: int, role: str):
        op = producers.get(tensor_index)
        kind = op_name.get(_opcode(model, op)) if op is not None else None
        if (role, kind) not in steps:
            raise BadInputError(f"unexpected domain-guard graph: {kind} writes its {role} tensor")
        change = _set_range(graph.Tensors(tensor_index), *ranges[role])
        if change:
            changes.append(change)
        for i, next_role in enumerate(steps[role, kind]):
            visit(int(op.Inputs(i)), next_role)

    outputs = graph.OutputsAsNumpy()
    if len(outputs) <= output_index:
        raise BadInputError("the converted model has no domain-guard output")
    visit(int(outputs[output_index]), "score")
    return (bytes(buf), changes) if changes else (data, None)


def record(guard: DomainGuard, io_output: dict, scores: np.ndarray, keras_scores: np.ndarray,
           conversion: dict | None, output_index: int = 1) -> dict:
    """The card's ``domain_guard`` record (model_card.schema.json) of one converted model: ``scores`` are its
    guard's on the validation split, ``keras_scores`` the float Keras guard's on the same images."""
    in_domain, keras_in = scores <= guard.threshold, keras_scores <= guard.threshold
    diff = np.abs(scores - keras_scores)
    return {
        "output": {**io_output, "index": output_index},
        "threshold": guard.threshold,
        "decision": "in domain when domain_score <= threshold; otherwise not assessed (no melanoma score is given)",
        "method": METHOD,
        "balance": guard.balance,
        "layers": list(guard.layers),
        "components": guard.components,
        "shrinkage": guard.shrinkage,
        "fitted_on": f"train split ({guard.n_fit} images)"
                     + ("" if guard.balance == "none" else f", each {guard.balance} group weighted alike"),
        "threshold_policy": (f"quantile {guard.quantile:g} of the validation split's scores (float model)"
                             if guard.balance == "none" else
                             f"the highest of each {guard.balance} group's quantile {guard.quantile:g} of its "
                             "validation scores (float model)"),
        **({"val_in_domain_by_group": guard.val_in_domain_by_group} if guard.val_in_domain_by_group else {}),
        "val_in_domain": float(np.mean(in_domain)),
        "val_in_domain_float": guard.val_in_domain,
        "agreement": float(np.mean(in_domain == keras_in)),  # in-domain decisions, vs the float Keras guard
        "score_mean_abs_diff": float(diff.mean()),
        "score_max_abs_diff": float(diff.max()),
        **({"ranges": conversion} if conversion else {}),
    }
