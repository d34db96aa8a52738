"""Hugging Face Trainer with the OtelRecursiveMetricsCallback: a tiny BERT built from a config.

Nothing is downloaded: the model is initialised from a ``BertConfig`` and learns a synthetic
task (is token 3 in the sequence?). Every ``on_log`` lands in the store under ``--dir``.

    pip install 'transformers' 'accelerate' torch
    python examples/hf_trainer.py --dir ./otel-metrics --steps 60
    otel-recursive-metrics plot --store ./otel-metrics/metrics.db --metric hf.loss --metric hf.eval_loss --out hf.png
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import transformers

from otel_recursive_metrics.integrations.hf import OtelRecursiveMetricsCallback


class TinyTask(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(4, 30, (n, 8), generator=generator)
        self.labels = torch.randint(0, 2, (n,), generator=generator)
        self.ids[self.labels == 1, 2] = 3

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, object]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="./otel-metrics")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
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
    with tempfile.TemporaryDirectory() as out:
        training_args = transformers.TrainingArguments(
            output_dir=out,
            max_steps=args.steps,
            per_device_train_batch_size=8,
            learning_rate=5e-3,
            logging_steps=1,
            eval_strategy="steps",
            eval_steps=max(1, args.steps // 5),
            save_strategy="no",
            report_to="none",  # only our callback
            use_cpu=True,
            disable_tqdm=True,
        )
        callback = OtelRecursiveMetricsCallback(prefix="hf.", dir=args.dir)
        trainer = transformers.Trainer(
            model=model, args=training_args, train_dataset=TinyTask(512, 0), eval_dataset=TinyTask(128, 1), callbacks=[callback]
        )
        trainer.train()
        callback.metrics.close()
    print(f"logged {args.steps} steps to {args.dir}/metrics.db")


if __name__ == "__main__":
    main()
