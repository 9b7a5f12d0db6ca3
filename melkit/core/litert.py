"""Running a .tflite model with the LiteRT interpreter (``ai_edge_litert``), through the contract.

The model's input is fed from the contract's uint8 ``q``: as is for a uint8 input (scale 1/128, zero
point 128 makes it equal to x), shifted by 128 for int8, normalized for float32. Outputs are
dequantized; the result is P(mel), the score at the card's index of "mel" (the last one without a card).
"""

from __future__ import annotations

import numpy as np

from melkit.core.errors import BadInputError
from melkit.data.preprocess import normalize


def load_interpreter(model, num_threads: int | None = None):
    from ai_edge_litert.interpreter import Interpreter  # LiteRT: imported when first needed

    try:
        if isinstance(model, (bytes, bytearray)):
            interp = Interpreter(model_content=bytes(model), num_threads=num_threads)
        else:
            interp = Interpreter(model_path=str(model), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise BadInputError(f"not a loadable TFLite model: {e}") from None
    return interp


def io_details(interp) -> dict:
    def one(d):
        scale, zero = d["quantization"]
        return {"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None}

    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    return {"input": one(inp), "output": one(out)}


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


def predict_p_mel(interp, images_q: np.ndarray, progress=None, *, p_mel_index: int = -1) -> np.ndarray:
    """P(mel) for each image, one invoke per image (as on the phone).

    ``p_mel_index`` is where P(mel) is in the output: pass the card's (``ModelCard.p_mel_index``, the
    position of "mel" in its labels); without a card (the converter's self-check) the last score.
    """
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    size = inp["shape"][1:3].tolist()
    if list(images_q.shape[1:3]) != size:
        raise BadInputError(f"images are {images_q.shape[1:3]}, the model expects {size}")
    scale, zero = out["quantization"]
    probs = np.empty(len(images_q), np.float64)
    for i, q in enumerate(images_q):
        interp.set_tensor(inp["index"], to_input(q[None], inp))
        interp.invoke()
        y = interp.get_tensor(out["index"]).astype(np.float64).reshape(-1)
        if scale:
            y = (y - zero) * scale
        probs[i] = y[p_mel_index]
        if progress:
            progress(1)
    return probs
