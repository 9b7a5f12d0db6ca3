"""``melkit train``: fine-tune MobileNetV2 on a lesion-grouped split into a run folder with honest metrics.

    from melkit.train import TrainOptions, run_train
    result = run_train(TrainOptions(data="data/ham10000", out="runs/ham"))   # -> TrainResult
"""

from melkit.train.trainer import TrainOptions, TrainResult, run_train

__all__ = ["TrainOptions", "TrainResult", "run_train"]
