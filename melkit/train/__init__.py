"""``melkit train``: fine-tune MobileNetV2 on a lesion-grouped split into a run folder with honest metrics.

    from melkit.train import TrainOptions, run_train
    result = run_train(TrainOptions(data="data/ham10000", out="runs/ham"))   # -> TrainResult
"""

from melkit.util.lazy import lazy_exports

_EXPORTS = {  # name -> the submodule that defines it, imported on first use (melkit.util.lazy)
    "TrainOptions": "trainer",
    "TrainResult": "trainer",
    "run_train": "trainer",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
