"""`SelfTrainingTrainer`: confidence-thresholded self-training, round by round.

Round 0 fine-tunes on the labeled pool. After each round the model predicts the unlabeled pool; rows
whose confidence passes ``threshold`` (at most ``k_per_class`` per predicted class) become
pseudo-labeled. The next round (from the initial weights, or continued) trains on labeled batches
plus pseudo-labeled batches. It stops after ``max_rounds`` or when no new row passes. The rounds are spans of one
`Trainer.train` run (`RoundLoopMixin`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger
from datasets import ClassLabel, Dataset, Value
from transformers.trainer_utils import TrainOutput, set_seed

from hf_ssl.methods.losses import mix_graph_prior
from hf_ssl.methods.pseudo_labels import select_pseudo_labels, selection_stats, soft_targets
from hf_ssl.trainer.base_trainer import SSLTrainer
from hf_ssl.trainer.dataset_card import PseudoLabelCardData, pseudo_label_dataset_card
from hf_ssl.trainer.model_card import format_cell, format_counts
from hf_ssl.trainer.pass_rate_warnings import WarnFewPseudoLabels
from hf_ssl.trainer.pseudo_label_stream import PseudoLabelStreamMixin
from hf_ssl.trainer.round_loop import RoundLoopMixin
from hf_ssl.trainer.round_report import RoundReport
from hf_ssl.trainer.safeguard import SafeguardMixin
from hf_ssl.trainer.self_training_config import SelfTrainingConfig
from hf_ssl.trainer.state import load_ssl_state
from hf_ssl.utils import staged_folder, write_file_atomic

logger = get_logger(__name__)

__all__ = ["SelfTrainingTrainer"]

INITIAL_WEIGHTS_NAME = "checkpoint-initial-weights.pt"


class SelfTrainingTrainer(SafeguardMixin, RoundLoopMixin, PseudoLabelStreamMixin, SSLTrainer):
    """Self-training (pseudo-labeling) as a `transformers.Trainer`.

    Parameters:
        Those of `SSLTrainer`, with ``args`` a `SelfTrainingConfig`. ``unlabeled_dataset`` is required when
        ``args.max_rounds`` > 0. Callbacks may define ``on_round_begin`` / ``on_round_end`` (`RoundCallback`);
        `RoundReport` (a default callback) prints a line on the console when each round begins and ends.

    With ``args.safeguard="graph"`` (the default) each round is checked against label spreading over the initial
    model's embeddings (`SafeguardMixin`) and the run ends with the model of the best round by that check.

    Attributes:
        rounds (`list[dict]`): one record per round (``round``, ``global_step`` of its last step, training loss,
            evaluation, pseudo-labels produced: count per class, confidence, accuracy against the hidden truth
            column when present), also written to ``output_dir/self_training_rounds.json``.
        termination_condition (`str` or `None`): why the run stopped: `"max_rounds"`, `"no_new_pseudo_labels"`, or
            `"training_stopped"` (a callback such as `EarlyStoppingCallback` set ``control.should_training_stop``).
        pseudo_rows, pseudo_targets, pseudo_confidence (`np.ndarray`): the current pseudo-labels: rows of the
            unlabeled pool, target distributions and the teacher's confidence.
        kept_round (`int` or `None`): the round whose model the trainer holds after `train` (the best by the
            safeguard's check, or the last round with ``safeguard="none"``); each record's ``check`` holds the
            round's ``graph_agreement``.
    """

    config_class = SelfTrainingConfig
    method_name = "self_training"
    method_title = "self-training (confidence-thresholded pseudo-labeling)"
    method_description = (
        "Round 0 fine-tunes on the labeled examples only. After each round the model labels the unlabeled "
        "pool; predictions whose confidence passes a threshold (optionally capped per class, so a majority "
        "class cannot swallow the pool) become pseudo-labels, and the next round trains on labeled batches "
        "plus pseudo-labeled batches."
    )
    paper = {"title": "Self-training with Noisy Student improves ImageNet classification (Xie et al., 2020)",
             "url": "https://arxiv.org/abs/1911.04252"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.max_rounds > 0 and self.unlabeled_dataset is None:
            raise ValueError("SelfTrainingTrainer needs unlabeled_dataset= when max_rounds > 0 "
                             "(set max_rounds=0 for labeled-only fine-tuning).")
        self.init_rounds()
        self.init_safeguard()
        n = len(self.unlabeled_dataset) if self.unlabeled_dataset is not None else 0
        self.add_callback(WarnFewPseudoLabels("ssl_selected", n))
        self.add_callback(RoundReport())
        self.pseudo_rows = np.zeros(0, dtype=np.int64)
        self.pseudo_targets = np.zeros((0, self.num_labels), dtype=np.float32)
        self.pseudo_confidence = np.zeros(0, dtype=np.float32)
        self.first_round = np.full(n, -1, dtype=np.int64)
        self._initial_state = None
        if self.args.reset_model_each_round and self.args.max_rounds > 0:
            self._initial_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    # ----------------------------------------------------------------- the method
    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None,
              ignore_keys_for_eval: list[str] | None = None, **kwargs: Any) -> TrainOutput:
        """Run the rounds as one `Trainer.train` (see `RoundLoopMixin`): round 0 on the labeled pool, then each round
        on labeled plus pseudo-labeled batches. Round r > 0 starts from ``set_seed(seed + r)``, with the initial
        weights when ``reset_model_each_round`` (saved once as ``output_dir/checkpoint-initial-weights.pt`` when there
        are checkpoints, so that a resumed run resets to them whatever model it was given), an empty optimizer state
        and the learning-rate schedule restarted.

        Parameters:
            resume_from_checkpoint (`str` or `bool` or `None`, defaults to `None`): a checkpoint folder
                (``output_dir/checkpoint-N``, as ``get_last_checkpoint(output_dir)`` returns), or `True` for the
                latest complete one.
            trial (*optional*): hyperparameter-search trial, as in `Trainer.train`.
            ignore_keys_for_eval (`list[str]` or `None`, defaults to `None`): as in `Trainer.train`.
        """
        checkpoint = self.find_checkpoint(resume_from_checkpoint)
        if checkpoint is None:
            self._reset_pseudo_labels()
            self._save_initial_weights(trial)
            set_seed(self.args.seed)
        else:
            self._load_initial_weights(checkpoint)
            self.load_safeguard_weights(checkpoint)
        output = super().train(resume_from_checkpoint=checkpoint, trial=trial,
                               ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)
        self.clear_unlabeled_stream()
        self.keep_best_round()
        return output

    def begin_round(self, round: int) -> None:
        if round == 0:
            if self.uses_graph:
                self.fit_graph_check()
            return
        if self._initial_state is not None:
            self.model.load_state_dict(self._initial_state)
        set_seed(self.args.seed + round)  # what follows in the round does not depend on how the last one ended
        self._stream_pseudo_labels()

    def end_round(self, record: dict[str, Any]) -> str | None:
        last = self.round == self.args.max_rounds
        probs = self.predict_unlabeled_probs() if self.safeguard_on or not last else None
        if self.safeguard_on:
            self.check_round(record, probs)
        if last:
            return "max_rounds"
        return "no_new_pseudo_labels" if self._pseudo_label_round(record, probs) == 0 else None

    def round_summary(self) -> dict[str, Any]:
        return {"pseudo_labeled_rows_used": int(len(self.pseudo_rows)) if self.round > 0 else 0}

    def _reset_pseudo_labels(self) -> None:
        self.reset_rounds()
        self.reset_safeguard()
        self.pseudo_rows = np.zeros(0, dtype=np.int64)
        self.pseudo_targets = np.zeros((0, self.num_labels), dtype=np.float32)
        self.pseudo_confidence = np.zeros(0, dtype=np.float32)
        self.first_round = np.full(len(self.first_round), -1, dtype=np.int64)

    def _save_initial_weights(self, trial: Any) -> None:
        """Keep the weights each round resets to beside the checkpoints (when there are checkpoints to resume)."""
        if self._initial_state is None or not self.args.should_save or self.args.save_strategy == "no":
            return
        path = os.path.join(self._get_output_dir(trial), INITIAL_WEIGHTS_NAME)
        write_file_atomic(path, lambda handle: torch.save(self._initial_state, handle))

    def _load_initial_weights(self, checkpoint: str) -> None:
        """On a resume, reset later rounds to the initial weights of the run that wrote ``checkpoint``."""
        if self._initial_state is None or int(load_ssl_state(checkpoint)["round"]) >= self.args.max_rounds:
            return
        path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), INITIAL_WEIGHTS_NAME)
        if os.path.exists(path):
            self._initial_state = torch.load(path, weights_only=True, map_location="cpu")
        else:
            logger.warning(f"{path} is missing: the rounds after the checkpoint restart from the weights of the "
                           "model given to this trainer, not necessarily those of the interrupted run.",
                           main_process_only=True)

    def _pseudo_label_round(self, record: dict[str, Any], probs: np.ndarray) -> int:
        """Label the unlabeled pool from the current model's ``probs`` (mixed with the graph's classes when
        ``graph_prior_weight`` > 0); update the pseudo-labels; return the number new."""
        if self.args.graph_prior_weight > 0:
            probs = mix_graph_prior(torch.from_numpy(probs), torch.from_numpy(self.check_labels),
                                    self.args.graph_prior_weight).numpy()
        rows = select_pseudo_labels(probs, self.args.threshold, self.args.k_per_class, self.args.class_fraction)
        truth = self.truth_labels()
        stats = selection_stats(probs, rows, self.num_labels, truth)
        new_rows = rows[self.first_round[rows] < 0]
        self.first_round[new_rows] = self.round + 1
        targets = soft_targets(probs[rows], self.args.soft_label_temperature) if self.args.soft_labels \
            else np.eye(self.num_labels, dtype=np.float32)[probs[rows].argmax(axis=1)]
        self.pseudo_rows = rows.astype(np.int64)
        self.pseudo_targets = targets.astype(np.float32)
        self.pseudo_confidence = probs[rows].max(axis=1).astype(np.float32)
        stats["new"] = int(len(new_rows))
        stats["per_class"] = dict(zip(self.class_names, stats["per_class"], strict=True))
        record["pseudo_labels"] = stats
        scalars = {f"ssl_{k}": float(v) for k, v in stats.items() if not isinstance(v, dict)}
        self.log(scalars | {"ssl_round": self.round})
        logger.info(f"Round {self.round}: {stats['selected']} pseudo-labels ({len(new_rows)} new), "
                    f"per class {stats['per_class']}", main_process_only=True)
        return int(len(new_rows))

    def predict_unlabeled_probs(self, dataset: Dataset | None = None) -> np.ndarray:
        """Class probabilities of the current model over the unlabeled pool (or ``dataset``), in row order."""
        dataset = self.unlabeled_dataset if dataset is None else dataset
        keep = self.model_input_columns(dataset)
        dataset = dataset.remove_columns([c for c in dataset.column_names if c not in keep])
        predictions = self.predict(dataset, metric_key_prefix="pseudo_label").predictions
        logits = predictions[0] if isinstance(predictions, tuple) else predictions
        return torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()

    def _stream_pseudo_labels(self, start_batch: int = 0) -> None:
        weights = self.pseudo_confidence if self.args.weight_by_confidence else np.ones_like(self.pseudo_confidence)
        self.set_pseudo_label_stream(self.pseudo_rows, self.pseudo_targets, weights, start_batch=start_batch,
                                     name=f"pseudo_labels_round_{self.round}")

    # ----------------------------------------------------------------- export, state
    def pseudo_labeled_dataset(self) -> Dataset:
        """The current pseudo-labeled rows of the unlabeled pool with ``pseudo_label`` (a `ClassLabel`),
        ``pseudo_confidence``, ``pseudo_round`` (round whose model first selected the row) and
        ``source_index`` (row in the unlabeled pool)."""
        rows = self.pseudo_rows
        data = self.unlabeled_dataset.select(rows)
        data = data.add_column("pseudo_label", self.pseudo_targets.argmax(axis=1).tolist(),
                               feature=ClassLabel(names=self.class_names))
        data = data.add_column("pseudo_confidence", self.pseudo_confidence.tolist(), feature=Value("float32"))
        data = data.add_column("pseudo_round", self.first_round[rows].tolist(), feature=Value("int64"))
        return data.add_column("source_index", rows.tolist(), feature=Value("int64"))

    def pseudo_label_card_data(self) -> PseudoLabelCardData:
        """What the dataset card of `pseudo_labeled_dataset` shows: the selection rule and the rounds' statistics."""
        args = self.args
        selection = f"confidence >= {args.threshold}"
        if args.class_fraction is not None:
            selection += f", top {args.class_fraction:.0%} of each predicted class"
        if args.k_per_class is not None:
            selection += f", at most {args.k_per_class} per predicted class"
        rounds = []
        for record in self.rounds:
            stats = record.get("pseudo_labels")
            if stats:
                accuracy = stats.get("pseudo_label_accuracy")
                rounds.append([record["round"], stats["selected"], stats["new"], f"{stats['mean_confidence']:.3f}",
                               "n/a" if accuracy is None else f"{accuracy:.3f}"])
        model = self.accelerator.unwrap_model(self.model)
        return PseudoLabelCardData(
            method_name=self.method_name, method_title=self.method_info().title,
            model=getattr(model.config, "_name_or_path", type(model).__name__),
            n_labeled=int(self.labeled_counts.sum()), n_unlabeled=len(self.unlabeled_dataset),
            n_rows=len(self.pseudo_rows), selection=selection, class_names=self.class_names, rounds=rounds)

    def export_pseudo_labels(self, path: str) -> str:
        """Save `pseudo_labeled_dataset` with ``save_to_disk`` plus a dataset card (``README.md``) to the folder
        ``path``: written to a temporary folder that replaces ``path`` with renames (`staged_folder`), so ``path``
        holds the previous export or the new one, whole, however the export ends."""
        if not self.is_world_process_zero():
            return path
        with staged_folder(path) as tmp:
            self.pseudo_labeled_dataset().save_to_disk(tmp)
            pseudo_label_dataset_card(self.pseudo_label_card_data()).save(os.path.join(tmp, "README.md"))
        return path

    def push_pseudo_labels_to_hub(self, repo_id: str, private: bool | None = None, token: str | None = None,
                                  **card_data: Any) -> None:
        """Push `pseudo_labeled_dataset` with `datasets`' own ``push_to_hub``, then its dataset card.

        Parameters:
            repo_id (`str`): dataset repository id.
            private (`bool` or `None`, defaults to `None`): create the repository private.
            token (`str` or `None`, defaults to `None`): Hub token.
            **card_data: extra `DatasetCardData` fields for the card (e.g. ``license``).
        """
        if not self.is_world_process_zero():
            return
        self.pseudo_labeled_dataset().push_to_hub(repo_id, private=private, token=token)
        pseudo_label_dataset_card(self.pseudo_label_card_data(), **card_data).push_to_hub(repo_id, token=token)

    def ssl_state_dict(self) -> dict[str, Any]:
        return super().ssl_state_dict() | {
            "pseudo_rows": torch.from_numpy(self.pseudo_rows),
            "pseudo_targets": torch.from_numpy(self.pseudo_targets),
            "pseudo_confidence": torch.from_numpy(self.pseudo_confidence),
            "first_round": torch.from_numpy(self.first_round)}

    def check_ssl_state(self, state: dict[str, Any]) -> None:
        super().check_ssl_state(state)
        if len(state["first_round"]) != len(self.first_round):
            raise ValueError(f"The checkpoint's unlabeled pool had {len(state['first_round'])} rows, this "
                             f"unlabeled_dataset has {len(self.first_round)}; resume with the same pools.")

    def load_ssl_state_dict(self, state: dict[str, Any]) -> None:
        super().load_ssl_state_dict(state)
        self.pseudo_rows = state["pseudo_rows"].numpy()
        self.pseudo_targets = state["pseudo_targets"].numpy()
        self.pseudo_confidence = state["pseudo_confidence"].numpy()
        self.first_round = state["first_round"].numpy()
        if self.round > 0:  # within a pseudo-labeling round: its stream, where the checkpoint left it
            self._stream_pseudo_labels(start_batch=self.unlabeled_batches_consumed)

    # ----------------------------------------------------------------- card
    def model_card_data(self, *args: Any, eval_results: dict[str, float] | None = None, **kwargs: Any) -> Any:
        """`SSLTrainer.model_card_data`, whose default evaluation is that of the kept round (`kept_round`)."""
        if eval_results is None and self.kept_round is not None and self.rounds \
                and self.kept_round != self.rounds[-1]["round"]:
            eval_results = next((r.get("eval") or {} for r in self.rounds if r["round"] == self.kept_round), {})
        return super().model_card_data(*args, eval_results=eval_results, **kwargs)

    def card_kept_model(self) -> str | None:
        return self.kept_model_note()

    def card_hyperparameters(self) -> dict[str, Any]:
        args = self.args
        return super().card_hyperparameters() | {
            "threshold": args.threshold, "k_per_class": args.k_per_class, "class_fraction": args.class_fraction,
            "max_rounds": args.max_rounds,
            "reset_model_each_round": args.reset_model_each_round, "soft_labels": args.soft_labels,
            "weight_by_confidence": args.weight_by_confidence, "graph_prior_weight": args.graph_prior_weight,
            "safeguard": args.safeguard}

    def card_statistics(self) -> tuple[list[str], list[list[Any]]]:
        header = ["round", "eval accuracy", "graph agreement (safeguard)", "pseudo-labels selected", "new",
                  "mean confidence", "pseudo-label accuracy (hidden truth)", "per class"]
        rows = []
        for rec in self.rounds:
            stats = rec.get("pseudo_labels", {})
            rows.append([rec["round"], format_cell(rec.get("eval", {}).get("eval_accuracy"), ".4f"),
                         format_cell(rec.get("check", {}).get("graph_agreement"), ".4f"),
                         stats.get("selected", "-"), stats.get("new", "-"), format_cell(stats.get("mean_confidence")),
                         format_cell(stats.get("pseudo_label_accuracy")), format_counts(stats.get("per_class", {}))])
        return header, rows
