"""Running a .tflite model with the LiteRT interpreter (``ai_edge_litert``), through the contract.

The model's input is fed from the contract's uint8 ``q``: as is for a uint8 input (scale 1/128, zero
point 128 makes it equal to x), shifted by 128 for int8, normalized for float32. Outputs are
dequantized; the result is P(mel), the score at the card's index of "mel" (the last one without a card).

A model converted with ``--domain-guard`` has a second output, the domain score (shape [1, 1]). Readers find
each output by the tensor name the card gives (``output_index``), never by position alone.
"""

from __future__ import annotations

import os

import numpy as np

from melkit.data.contract import normalize
from melkit.util.errors import BadInputError
from melkit.util.native_logs import quiet


def load_interpreter(model, num_threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter  # LiteRT: imported when first needed

    quiet()  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr
    if not isinstance(model, (bytes, bytearray)) and not os.path.exists(model):
        # LiteRT says "Could not open" of a file that is not there: that is not a model that fails to load
        raise BadInputError(f"model file not found: {model} (was it removed?)")
    try:
        if isinstance(model, (bytes, bytearray)):
            interp = Interpreter(model_content=bytes(model), num_threads=num_threads)
        else:
            interp = Interpreter(model_path=str(model), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BadInputError(f"not a loadable TFLite model: {e}") from None
    return interp


def tensor_details(d) -> dict:
    """One input or output detail of the interpreter, in the card's form."""
    scale, zero = d["quantization"]
    return {"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
            "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}


def io_details(interp) -> dict:
    """The input and the first output in the card's form; ``more_outputs`` lists any further outputs (a
    domain-guard model has one) and is absent when there are none."""
    ins, outs = interp.get_input_details(), interp.get_output_details()
    if len(ins) != 1 or not outs:
        raise BadInputError(f"expected a model with one input and an output, not {len(ins)} input(s) and "
                            f"{len(outs)} output(s)")
    d = {"input": tensor_details(ins[0]), "output": tensor_details(outs[0])}
    if len(outs) > 1:
        d["more_outputs"] = [tensor_details(o) for o in outs[1:]]
    return d


def output_index(interp, name: str | None = None) -> int:
    """Position of the output tensor named ``name`` (a card's ``output.name``); the first output without a name."""
    if name is None:
        return 0
    names = [d["name"] for d in interp.get_output_details()]
    if name not in names:
        raise BadInputError(f"the model has no output named {name!r} (it has {', '.join(names)})")
    return names.index(name)


def to_input(q: np.ndarray, detail) -> np.ndarray:
    """Contract uint8 q (N,S,S,3) -> the model's input tensor."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.uint8:
        return q.astype(np.uint8)
    if dtype == np.int8:
        return (q.astype(np.int16) - 128).astype(np.int8)
    if dtype == np.float32:
        return normalize(q)
    raise BadInputError(f"unsupported model input type {dtype}")


def dequantized(interp, detail) -> np.ndarray:
    """An output tensor after the last invoke, flat, in float64 (``(raw - zero_point) * scale`` if quantized)."""
    y = interp.get_tensor(detail["index"]).astype(np.float64).reshape(-1)
    scale, zero = detail["quantization"]
    return (y - zero) * scale if scale else y


def run_outputs(interp, images_q: np.ndarray, indices, progress=None) -> list:
    """For each output position in ``indices``, an (N, size) array of its dequantized values: one invoke per
    image, as on the phone."""
    inp = interp.get_input_details()[0]
    outs = [interp.get_output_details()[i] for i in indices]
    size = inp["shape"][1:3].tolist()
    if list(images_q.shape[1:3]) != size:
        raise BadInputError(f"images are {images_q.shape[1:3]}, the model expects {size}")
    results = [np.empty((len(images_q), int(np.prod(o["shape"]))), np.float64) for o in outs]
    for i, q in enumerate(images_q):
        interp.set_tensor(inp["index"], to_input(q[None], inp))
        interp.invoke()
        for r, o in zip(results, outs):
            r[i] = dequantized(interp, o)
        if progress:
            progress(1)
    return results


def predict_p_mel(interp, images_q: np.ndarray, progress=None, *, p_mel_index: int = -1,
                  output: str | None = None) -> np.ndarray:
    """P(mel) for each image, one invoke per image (as on the phone).

    ``p_mel_index`` is where P(mel) is in the output: pass the card's (``ModelCard.p_mel_index``, the
    position of "mel" in its labels); without a card (the converter's self-check) the last score.
    ``output`` is the probabilities' tensor name (the card's ``output.name``); None: the first output.
    """
    (probs,) = run_outputs(interp, images_q, [output_index(interp, output)], progress)
    return probs[:, p_mel_index]


def predict_with_domain(interp, images_q: np.ndarray, progress=None, *, p_mel_index: int = -1,
                        output: str | None = None, domain_output: str) -> tuple[np.ndarray, np.ndarray]:
    """(P(mel), domain score) for each image of a domain-guard model, from the same invoke."""
    probs, score = run_outputs(interp, images_q, [output_index(interp, output), output_index(interp, domain_output)],
                               progress)
    return probs[:, p_mel_index], score[:, 0]
