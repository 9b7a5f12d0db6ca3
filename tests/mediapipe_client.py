"""A real third-party client: MediaPipe Tasks' ImageClassifier on a melkit .tflite.

Runs in its own venv holding only mediapipe (its absl/protobuf pins clash with tensorflow-model-
optimization). Reads uint8 RGB images already at the model size from a .npy (N,S,S,3), so MediaPipe's own
resize is the identity and scores can be compared exactly. Prints JSON: per image, {"scores": {label:
score}, "top": the top category's label (what a generic client reports)}. Also used by
benchmarks/mediapipe_agreement.py.
"""

import json
import sys

import mediapipe as mp
import numpy as np
from mediapipe.tasks import python as mp_tasks
from mediapipe.tasks.python import vision


def main(model_path, images_npy):
    images = np.load(images_npy)
    options = vision.ImageClassifierOptions(base_options=mp_tasks.BaseOptions(model_asset_path=model_path),
                                            max_results=-1)
    out = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for img in images:
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img)))
            categories = result.classifications[0].categories  # best first, as MediaPipe ranks them
            out.append({"scores": {c.category_name: c.score for c in categories},
                        "top": categories[0].category_name})
    print(json.dumps(out))


if __name__ == "__main__":
    main(*sys.argv[1:3])
