"""Train a small NumPy MLP and log every step with TrainingMetrics.

A 2-layer network (ReLU, softmax) learns a 3-class spiral from synthetic data, with mini-batch
SGD. Every step logs the training loss, accuracy, learning rate and gradient norm; every
``--eval-every`` steps it logs the validation loss and accuracy. Everything lands in the
embedded store under ``--dir``; then:

    python examples/train_numpy.py --dir ./otel-metrics --steps 1500
    otel-recursive-metrics runs --store ./otel-metrics/metrics.db
    otel-recursive-metrics plot --store ./otel-metrics/metrics.db \\
        --metric train.loss --metric train.accuracy --metric val.accuracy --smooth 10 --out curves.png

``--run-id`` names the run (else one is generated, or taken from torchrun / SLURM variables).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def spiral(n_per_class: int, classes: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The classic spiral data set: ``classes`` interleaved arms in 2-D."""
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + rng.normal(0, 0.2, n_per_class)
        xs.append(np.c_[r * np.sin(t), r * np.cos(t)])
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs).astype(np.float64), np.concatenate(ys)


class MLP:
    """Two dense layers with a ReLU between them, trained by plain SGD."""

    def __init__(self, inputs: int, hidden: int, classes: int, rng: np.random.Generator) -> None:
        self.w1 = rng.normal(0, np.sqrt(2.0 / inputs), (inputs, hidden))
        self.b1 = np.zeros(hidden)
        self.w2 = rng.normal(0, np.sqrt(2.0 / hidden), (hidden, classes))
        self.b2 = np.zeros(classes)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.maximum(0.0, x @ self.w1 + self.b1)
        logits = h @ self.w2 + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return h, p / p.sum(axis=1, keepdims=True)

    def loss_and_accuracy(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        _, p = self.forward(x)
        return float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()), float((p.argmax(axis=1) == y).mean())

    def step(self, x: np.ndarray, y: np.ndarray, lr: float, weight_decay: float) -> tuple[float, float, float]:
        h, p = self.forward(x)
        n = len(y)
        loss = float(-np.log(p[np.arange(n), y] + 1e-12).mean())
        accuracy = float((p.argmax(axis=1) == y).mean())
        d = p.copy()
        d[np.arange(n), y] -= 1.0
        d /= n
        gw2 = h.T @ d + weight_decay * self.w2
        gb2 = d.sum(axis=0)
        dh = (d @ self.w2.T) * (h > 0)
        gw1 = x.T @ dh + weight_decay * self.w1
        gb1 = dh.sum(axis=0)
        grads = (gw1, gb1, gw2, gb2)
        norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads)))
        for param, grad in zip((self.w1, self.b1, self.w2, self.b2), grads, strict=True):
            param -= lr * grad  # noqa: PLW2901 - in place on the array, which is the point
        return loss, accuracy, norm


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="./otel-metrics", help="data folder (store, queue, dead letters)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-id", help="run id (default: from torchrun/SLURM, else generated)")
    args = parser.parse_args(argv)
    if args.run_id:
        os.environ["OTEL_RECURSIVE_METRICS_RUN_ID"] = args.run_id

    from otel_recursive_metrics.training import TrainingMetrics

    rng = np.random.default_rng(args.seed)
    x, y = spiral(400, 3, rng)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    split = int(0.8 * len(y))
    x_train, y_train, x_val, y_val = x[:split], y[:split], x[split:], y[split:]
    model = MLP(2, args.hidden, 3, rng)

    started = time.perf_counter()
    # One pipeline (its own, in --dir) shared by the train and validation loggers.
    with TrainingMetrics(prefix="train.", dir=args.dir, flush_interval_s=1.0) as train:
        val = TrainingMetrics(prefix="val.", pipeline=train.pipeline)
        # The run's hyperparameters: `otel-recursive-metrics runs` and `compare` show them.
        train.log_params(
            {
                "lr": args.lr,
                "hidden": args.hidden,
                "batch_size": args.batch_size,
                "steps": args.steps,
                "seed": args.seed,
                "schedule": "cosine",
                "optimizer": {"name": "sgd", "weight_decay": 1e-4},
            }
        )
        steps_per_epoch = max(1, len(y_train) // args.batch_size)
        first = last = {}
        for step in range(args.steps):
            epoch = step // steps_per_epoch
            if step % steps_per_epoch == 0:
                perm = rng.permutation(len(y_train))
            idx = perm[(step % steps_per_epoch) * args.batch_size : (step % steps_per_epoch + 1) * args.batch_size]
            lr = args.lr * 0.5 * (1 + np.cos(np.pi * step / args.steps))  # cosine decay
            loss, accuracy, grad_norm = model.step(x_train[idx], y_train[idx], lr, weight_decay=1e-4)
            train.log({"loss": loss, "accuracy": accuracy, "lr": lr, "grad_norm": grad_norm}, step=step, epoch=epoch)
            if step % args.eval_every == 0 or step == args.steps - 1:
                val_loss, val_accuracy = model.loss_and_accuracy(x_val, y_val)
                val.log({"loss": val_loss, "accuracy": val_accuracy}, step=step, epoch=epoch)
                last = {"val_loss": val_loss, "val_accuracy": val_accuracy}
                first = first or last
    elapsed = time.perf_counter() - started
    result = {
        "first_val_loss": first["val_loss"],
        "last_val_loss": last["val_loss"],
        "first_val_accuracy": first["val_accuracy"],
        "last_val_accuracy": last["val_accuracy"],
        "steps": args.steps,
        "seconds": elapsed,
    }
    print(
        f"{args.steps} steps in {elapsed:.1f}s: val loss {first['val_loss']:.3f} -> {last['val_loss']:.3f},"
        f" val accuracy {first['val_accuracy']:.2f} -> {last['val_accuracy']:.2f}; store: {os.path.join(args.dir, 'metrics.db')}"
    )
    return result


if __name__ == "__main__":
    main()
