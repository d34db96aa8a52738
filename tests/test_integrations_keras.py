"""The Keras 3 callback in a real model.fit (PyTorch backend, or whichever one is set)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tests.conftest import require_module
from tests.helpers import run_example

if "KERAS_BACKEND" not in os.environ:
    require_module("torch", "keras")
    os.environ["KERAS_BACKEND"] = "torch"
keras = require_module("keras", "keras")

from otel_recursive_metrics.integrations.keras import OtelRecursiveMetricsCallback  # noqa: E402
from otel_recursive_metrics.store import PointStore  # noqa: E402


def test_fit_logs_every_batch_and_epoch_into_the_store(data_dir: Path) -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy", metrics=["accuracy"])
    callback = OtelRecursiveMetricsCallback(prefix="keras.", dir=data_dir, flush_interval_s=0.2)
    model.fit(x, y, epochs=3, batch_size=32, validation_split=0.25, callbacks=[callback], verbose=0)
    assert callback.metrics.flush(120)

    store = PointStore(data_dir / "metrics.db")
    try:
        # 192 training samples / 32 = 6 batches an epoch.
        loss = store.query("keras.batch_loss")
        assert [p.step for p in loss] == list(range(1, 19))
        assert [p.epoch for p in loss] == [s // 6 for s in range(18)]
        assert len(store.query("keras.batch_accuracy")) == 18
        val = store.query("keras.epoch_val_loss")
        assert [(p.step, p.epoch) for p in val] == [(6, 0), (12, 1), (18, 2)]
        epoch_loss = [p.value for p in store.query("keras.epoch_loss")]
        assert len(epoch_loss) == 3 and epoch_loss[-1] < epoch_loss[0]
    finally:
        store.close()
    callback.metrics.close()


def test_example_script_runs(tmp_path: Path) -> None:
    store = run_example("keras_fit.py", tmp_path / "data", "--epochs", "1")
    try:
        assert len(store.query("keras.batch_loss")) > 0
    finally:
        store.close()
