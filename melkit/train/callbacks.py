"""Keras callbacks that make a stage resumable: history rows on disk and the best weights kept.

Keras' ``BackupAndRestore`` brings back the model, optimizer and epoch after a crash; these two keep
what it does not: the history written so far and the early-stopping state (best val AUC, patience).
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

from melkit.util.files import atomic_writer, read_json, write_json
from melkit.util.tf import keras

HISTORY_COLUMNS = ("stage", "epoch", "loss", "auc", "val_loss", "val_auc", "learning_rate", "seconds")


class HistoryLog(keras.callbacks.Callback):
    """Adds one row per epoch to history.csv, the whole file written again atomically (a few rows): a crash
    or a full disk loses at most the current epoch's row, and never leaves half a row for --resume to extend."""

    def __init__(self, path, stage: str, offset: int = 0):
        super().__init__()
        self.path, self.stage, self.offset = Path(path), stage, offset

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        new = not self.path.exists()
        lr = self.model.optimizer.learning_rate
        row = {
            "stage": self.stage,
            "epoch": self.offset + epoch + 1,
            "learning_rate": float(keras.backend.get_value(lr)) if not callable(lr) else "",
            "seconds": round(time.time() - self._t0, 2),
        }
        for k in ("loss", "auc", "val_loss", "val_auc"):
            row[k] = float(logs[k]) if k in logs else ""
        before = "" if new else self.path.read_text(encoding="utf-8")
        with atomic_writer(self.path) as f:
            f.write(before)
            w = csv.DictWriter(f, HISTORY_COLUMNS, lineterminator="\n")
            if new:
                w.writeheader()
            w.writerow(row)


class KeepBest(keras.callbacks.Callback):
    """Saves the weights with the best val AUC and stops after ``patience`` epochs without progress.

    Its state lives in a JSON file next to the weights, so a resumed stage continues the same count.
    """

    def __init__(self, directory, patience: int = 0, keep_best: bool = True):
        super().__init__()
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        # TF checkpoint format, not HDF5: it restores under a distribution strategy (SyncOnRead BN statistics).
        self.weights = str(self.dir / "best.ckpt")
        self.state_path = self.dir / "best.json"
        self.patience, self.keep_best = patience, keep_best
        self.state = read_json(self.state_path) if self.state_path.exists() else {"best": None, "wait": 0, "epoch": None}

    def on_epoch_end(self, epoch, logs=None):
        auc = (logs or {}).get("val_auc")
        if auc is None or math.isnan(auc):
            return
        if self.state["best"] is None or auc > self.state["best"]:
            self.state.update(best=float(auc), wait=0, epoch=epoch + 1)
            if self.keep_best:
                self.model.save_weights(self.weights)
        else:
            self.state["wait"] += 1
            if self.patience and self.state["wait"] >= self.patience:
                self.model.stop_training = True
        write_json(self.state_path, self.state)

    def restore(self, model):
        """Load the best epoch's weights (no-op when keep_best is off or nothing was saved)."""
        if self.keep_best and Path(self.weights + ".index").exists():
            model.load_weights(self.weights)
        return self.state
