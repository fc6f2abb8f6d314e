"""push_to_hub through the Trainer's own mechanism, up to the upload call (the Hub is unreachable here)."""

from __future__ import annotations

import fnmatch
import os
from types import SimpleNamespace

import transformers.trainer
from helpers.tiny import tiny_bert
from huggingface_hub import ModelCard

from hf_ssl import SelfTrainingConfig, SelfTrainingTrainer
from hf_ssl.data.metrics import classification_metrics


class FakeApi:
    """Records what would be uploaded instead of talking to the Hub."""

    def __init__(self):
        self.uploads = []

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=f"me/{repo_id}")

    def upload_folder(self, repo_id, folder_path, ignore_patterns=(), **kwargs):
        files = []
        for root, _, names in os.walk(folder_path):
            for name in names:
                rel = os.path.relpath(os.path.join(root, name), folder_path)
                if not any(fnmatch.fnmatch(rel, pattern) for pattern in ignore_patterns):
                    files.append(rel)
        self.uploads.append({"repo_id": repo_id, "folder": folder_path, "files": sorted(files)})
        return "https://example.invalid/commit"


def test_push_to_hub_uploads_model_tokenizer_and_card_without_checkpoints(tmp_path, pools, tokenizer,
                                                                          monkeypatch):
    api = FakeApi()
    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: api)
    labeled, unlabeled, evaluation = pools
    args = SelfTrainingConfig(output_dir=str(tmp_path / "tiny-ssl"), max_rounds=1, threshold=0.4, num_train_epochs=4,
                              per_device_train_batch_size=4, learning_rate=1e-2, report_to="none",
                              save_strategy="steps", save_steps=3, use_cpu=True, seed=0)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  eval_dataset=evaluation, processing_class=tokenizer,
                                  compute_metrics=classification_metrics)
    trainer.train()
    trainer.evaluate()
    trainer.push_to_hub(dataset_name="toy-keywords")
    [upload] = api.uploads
    assert upload["repo_id"] == "me/tiny-ssl"
    files = upload["files"]
    expected = {"model.safetensors", "config.json", "tokenizer.json", "README.md", "self_training_rounds.json"}
    assert expected <= set(files)
    assert not [f for f in files if "checkpoint" in f], files
    # weights only as safetensors (training_args.bin is the Trainer's pickled arguments, not weights)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth")) and f != "training_args.bin"], files
    card = ModelCard.load(os.path.join(upload["folder"], "README.md"))
    assert card.data.library_name == "transformers" and card.data.datasets == ["toy-keywords"]
    assert "self_training" in card.data.tags and card.data.pipeline_tag == "text-classification"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert set(results) == {"accuracy", "macro_f1", "loss"} and 0 <= results["accuracy"] <= 1
    assert "| 0 |" in card.text and "| 1 |" in card.text


def test_pseudo_labeled_dataset_export_and_push(tmp_path, pools, tokenizer, monkeypatch):
    from datasets import Dataset, load_from_disk
    from huggingface_hub import DatasetCard

    pushed = {}
    monkeypatch.setattr(Dataset, "push_to_hub", lambda self, repo_id, **kw: pushed.setdefault("data", (repo_id, self)))
    monkeypatch.setattr(DatasetCard, "push_to_hub", lambda self, repo_id, **kw: pushed.setdefault("card", self))
    labeled, unlabeled, _ = pools
    args = SelfTrainingConfig(output_dir=str(tmp_path / "out"), max_rounds=1, threshold=0.4, num_train_epochs=8,
                              per_device_train_batch_size=4, learning_rate=1e-2, report_to="none",
                              save_strategy="no", use_cpu=True, seed=0)
    trainer = SelfTrainingTrainer(model=tiny_bert(), args=args, train_dataset=labeled, unlabeled_dataset=unlabeled,
                                  processing_class=tokenizer)
    trainer.train()
    trainer.push_pseudo_labels_to_hub("me/toy-pseudo", license="apache-2.0")
    repo_id, data = pushed["data"]
    assert repo_id == "me/toy-pseudo" and len(data) == len(trainer.pseudo_rows) > 0
    assert {"pseudo_label", "pseudo_confidence", "pseudo_round", "source_index"} <= set(data.column_names)
    card = pushed["card"]
    assert card.data.license == "apache-2.0" and "pseudo-labels" in card.data.tags
    assert f"of which {len(data)} are pseudo-labeled" in card.text and "not human annotations" in card.text
    folder = trainer.export_pseudo_labels(str(tmp_path / "export"))
    assert len(load_from_disk(folder)) == len(data)
    assert DatasetCard.load(os.path.join(folder, "README.md")).data.tags == ["hf_ssl", "pseudo-labels", "self_training"]
