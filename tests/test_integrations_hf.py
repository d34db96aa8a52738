"""The Hugging Face callback in a real Trainer.fit of a tiny BERT built from a config."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import require_module
from tests.helpers import run_example

torch = require_module("torch", "hf")
transformers = require_module("transformers", "hf")
require_module("accelerate", "hf")

from otel_recursive_metrics.integrations.hf import OtelRecursiveMetricsCallback  # noqa: E402
from otel_recursive_metrics.store import PointStore  # noqa: E402


class TinyTask(torch.utils.data.Dataset):  # type: ignore[misc]
    """Sequences whose label is whether token 3 appears: learnable in a few steps."""

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(4, 30, (n, 8), generator=generator)
        self.labels = torch.randint(0, 2, (n,), generator=generator)
        self.ids[self.labels == 1, 2] = 3

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, object]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


def test_trainer_fit_logs_every_step_into_the_store(tmp_path: Path, data_dir: Path) -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=24,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=5e-3,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=12,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    callback = OtelRecursiveMetricsCallback(prefix="hf.", dir=data_dir, flush_interval_s=0.2)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=TinyTask(192, 0), eval_dataset=TinyTask(64, 1), callbacks=[callback]
    )
    trainer.train()
    assert callback.metrics.flush(120)

    store = PointStore(data_dir / "metrics.db")
    try:
        loss = store.query("hf.loss")
        assert [p.step for p in loss] == list(range(1, 25))
        assert all(isinstance(p.value, float) for p in loss)
        assert {p.epoch for p in loss} <= {0, 1, 2}
        assert [p.step for p in store.query("hf.eval_loss")] == [12, 24]
        assert len(store.query("hf.learning_rate")) == 24
        assert len(store.query("hf.train_runtime")) == 1
        (run,) = store.runs()
        assert run["params"]["max_steps"] == 24  # the TrainingArguments, as the run's parameters
        assert run["params"]["learning_rate"] == 5e-3
    finally:
        store.close()
    callback.metrics.close()


def test_example_script_runs(tmp_path: Path) -> None:
    store = run_example("hf_trainer.py", tmp_path / "data", "--steps", "6")
    try:
        assert len(store.query("hf.loss")) > 0
    finally:
        store.close()
