"""PyTorch Lightning with the OtelRecursiveMetricsLogger: a tiny regression, every step kept.

pip install lightning
python examples/lightning_fit.py --dir ./otel-metrics --epochs 5
otel-recursive-metrics plot --store ./otel-metrics/metrics.db --metric lit.train_loss --metric lit.val_loss --out lit.png
"""

from __future__ import annotations

import argparse
import tempfile

import lightning as L
import torch

from otel_recursive_metrics.integrations.lightning import OtelRecursiveMetricsLogger


class TinyRegression(L.LightningModule):  # type: ignore[misc]
    def __init__(self, hidden: int = 16, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="./otel-metrics")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(640, 3, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(640, 1, generator=generator)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:512], y[:512]), batch_size=32)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[512:], y[512:]), batch_size=64)
    logger = OtelRecursiveMetricsLogger(prefix="lit.", dir=args.dir)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            max_epochs=args.epochs,
            logger=logger,
            log_every_n_steps=1,  # Lightning's default is 50: keep every step
            accelerator="cpu",
            enable_checkpointing=False,
            enable_progress_bar=False,
            default_root_dir=root,
        )
        trainer.fit(TinyRegression(), train, val)
    logger.experiment.close()
    print(f"run {logger.version}: logged to {args.dir}/metrics.db")


if __name__ == "__main__":
    main()
