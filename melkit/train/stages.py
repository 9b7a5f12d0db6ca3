"""One training stage: what trains, on what, for how long; resumable.

A stage that trains only the head on un-augmented images runs on cached base features: the frozen
base is evaluated once instead of every epoch, and on a CPU that forward pass is nearly all of an epoch's
cost (``benchmarks/train_speed.py`` measures the difference).
"""

from __future__ import annotations

import numpy as np

from melkit.core.model import feature_extractor, head_model, set_trainable
from melkit.data.augment import build_augmenter
from melkit.data.pipeline import make_dataset, source_weights, strata
from melkit.train.callbacks import HistoryLog, KeepBest
from melkit.util.progress import keras_verbose
from melkit.util.tf import keras, tf


def _optimizer(stage):
    if stage.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(stage.learning_rate)
    return keras.optimizers.Adam(stage.learning_rate)


def _compile(model, stage, label_smoothing=0.0):
    model.compile(
        optimizer=_optimizer(stage),
        loss=keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing),
        metrics=[keras.metrics.AUC(from_logits=True, name="auc")],
    )


def uses_feature_cache(stage, distributed: bool) -> bool:
    # Under a distribution strategy every replica must see the same variables: train through fit there.
    return stage.trainable == "head" and not stage.augment and not distributed


def _features(model, images, batch_size):
    ds = make_dataset(images, np.zeros(len(images)), batch_size).map(lambda x, y: x)
    return feature_extractor(model).predict(ds, verbose=keras_verbose()).astype(np.float32)


def run_stage(model, stage, *, recipe, parts, class_weight, ckpt, history_path, epoch_offset, strategy,
              distributed=False, seed=0):
    """Train ``model`` through one ``stage`` of ``recipe`` on ``parts`` ("train", "val"), resumable from ``ckpt``.

    ``class_weight``: {label: weight} or None; ``history_path`` gets one row per epoch, numbered from
    ``epoch_offset`` (the epochs of the stages before); ``strategy`` the distribution strategy, ``distributed``
    whether one was asked for (then the stage trains through fit, never on cached features). With early stopping
    the model ends with the weights of the stage's best epoch (:class:`KeepBest`).
    """
    ckpt.mkdir(parents=True, exist_ok=True)
    set_trainable(model, stage.trainable, recipe.bn_inference)
    keep = KeepBest(ckpt, patience=stage.early_stopping_patience, keep_best=stage.early_stopping_patience > 0)
    callbacks = [
        keras.callbacks.BackupAndRestore(str(ckpt / "backup")),
        HistoryLog(history_path, stage.name, epoch_offset),
        keep,
    ]
    train, val = parts["train"], parts["val"]
    if uses_feature_cache(stage, distributed):
        trainee = head_model(model)
        x_train = _features(model, train.images, recipe.batch_size)
        x_val = _features(model, val.images, recipe.batch_size)
        _compile(trainee, stage, recipe.label_smoothing)
        # Cached features are fitted as arrays: balancing sources weights the loss instead of the draws.
        weights = None
        if recipe.source_balance:
            by_class = (np.array([class_weight[int(y)] for y in train.labels], np.float32) if class_weight else 1.0)
            weights = source_weights(train.records) * by_class
        trainee.fit(
            x_train, train.labels.astype(np.float32), batch_size=recipe.batch_size, epochs=stage.epochs,
            validation_data=(x_val, val.labels.astype(np.float32)),
            class_weight=None if weights is not None else class_weight,
            sample_weight=weights, shuffle=True, callbacks=callbacks, verbose=keras_verbose(),
        )
    else:
        augmenter = build_augmenter(recipe.augment, seed) if stage.augment else None
        train_ds = make_dataset(train.images, train.labels, recipe.batch_size, training=True, augmenter=augmenter,
                                seed=seed, groups=strata(train.records, recipe.oversample, recipe.source_balance))
        val_ds = make_dataset(val.images, val.labels, recipe.batch_size)
        if distributed:
            opts = tf.data.Options()
            opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            train_ds, val_ds = train_ds.with_options(opts), val_ds.with_options(opts)
        with strategy.scope():
            _compile(model, stage, recipe.label_smoothing)
        model.fit(
            train_ds, epochs=stage.epochs, validation_data=val_ds,
            class_weight=None if recipe.oversample else class_weight, callbacks=callbacks, verbose=keras_verbose(),
        )
    keep.restore(model)
