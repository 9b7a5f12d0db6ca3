"""What the three stages share, above ``data``: the run API (``run``), the typed model card (``card``),
metrics, the model and its recipes, running a .tflite (``litert``), probabilities and likelihood ratios.

``train``, ``convert`` and ``bench`` import ``util``, ``data`` and ``core``, never each other
(tests/test_layers.py).
"""
