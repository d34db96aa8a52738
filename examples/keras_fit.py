"""Keras 3 with the OtelRecursiveMetricsCallback: every batch and epoch kept.

Keras 3 needs a backend; this example uses PyTorch unless ``KERAS_BACKEND`` says otherwise.

    pip install keras torch
    python examples/keras_fit.py --dir ./otel-metrics --epochs 5
    otel-recursive-metrics plot --store ./otel-metrics/metrics.db \\
        --metric keras.batch_loss --metric keras.epoch_val_accuracy --out keras.png
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np

from otel_recursive_metrics.integrations.keras import OtelRecursiveMetricsCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="./otel-metrics")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1024, 4)).astype("float32")
    y = (x[:, 0] * x[:, 1] > 0).astype("float32")  # XOR-like: needs the hidden layer
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    callback = OtelRecursiveMetricsCallback(prefix="keras.", dir=args.dir)
    model.fit(x, y, epochs=args.epochs, batch_size=32, validation_split=0.2, callbacks=[callback], verbose=0)
    callback.metrics.close()
    print(f"logged {callback.global_step} steps to {args.dir}/metrics.db")


if __name__ == "__main__":
    main()
