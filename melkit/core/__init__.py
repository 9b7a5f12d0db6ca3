"""What the three stages share: the run API, the typed model card, metrics, the model, files, errors.

``train``, ``convert`` and ``benchmark`` import ``core`` and ``data``, never each other (tests/test_layers.py).
"""
