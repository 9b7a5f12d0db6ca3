"""What the three stages share: the run API (``run``), the typed model card (``card``), metrics, the model
and its recipes, running a .tflite (``litert``), options declared once (``options``), files, errors.

``train``, ``convert`` and ``benchmark`` import ``core`` and ``data``, never each other (tests/test_layers.py).
"""
