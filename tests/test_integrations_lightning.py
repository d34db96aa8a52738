"""The Lightning logger in a real Trainer.fit of a tiny model."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import require_module
from tests.helpers import run_example

torch = require_module("torch", "lightning")
L = require_module("lightning", "lightning")

from otel_recursive_metrics.integrations.lightning import OtelRecursiveMetricsLogger  # noqa: E402
from otel_recursive_metrics.store import PointStore  # noqa: E402


class TinyRegression(L.LightningModule):  # type: ignore[misc]
    def __init__(self, hidden: int = 8, lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: tuple[object, object], batch_idx: int) -> object:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        self.log("lr", self.hparams.lr)
        return loss

    def validation_step(self, batch: tuple[object, object], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> object:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loaders() -> tuple[object, object]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(160, 3, generator=generator)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(160, 1, generator=generator)
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[:128], y[:128]), batch_size=16)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[128:], y[128:]), batch_size=32)
    return train, val


def test_trainer_fit_logs_every_step_into_the_store(tmp_path: Path, data_dir: Path) -> None:
    torch.manual_seed(0)
    logger = OtelRecursiveMetricsLogger(prefix="lit.", dir=data_dir, flush_interval_s=0.2)
    trainer = L.Trainer(
        max_epochs=3,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    train, val = loaders()
    trainer.fit(TinyRegression(), train, val)
    assert logger.experiment.flush(120)
    assert logger.version == logger.experiment.pipeline.resource_attributes["training.run.id"]

    store = PointStore(data_dir / "metrics.db")
    try:
        loss = store.query("lit.train_loss")
        # 8 batches an epoch, 3 epochs, logged at every step; Lightning's steps count from 0.
        assert [p.step for p in loss] == list(range(24))
        assert [p.epoch for p in loss] == [s // 8 for s in range(24)]
        assert loss[-1].value < loss[0].value
        assert [p.epoch for p in store.query("lit.val_loss")] == [0, 1, 2]
        assert "lit.epoch" not in store.metric_names()
        (run,) = store.runs()
        assert run["params"] == {"hidden": 8, "lr": 0.05}  # the model's hyperparameters, as the run's parameters
    finally:
        store.close()
    logger.experiment.close()


def test_example_script_runs(tmp_path: Path) -> None:
    store = run_example("lightning_fit.py", tmp_path / "data", "--epochs", "1")
    try:
        assert len(store.query("lit.train_loss")) > 0
    finally:
        store.close()
