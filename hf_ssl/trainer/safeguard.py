"""The safeguard of `SelfTrainingTrainer` (``safeguard="graph"``): a check each round that needs no held-out labels,
and the round whose model the run keeps.

At the start of a fresh run the initial (pretrained) model embeds the labeled and unlabeled pools and a
`LabelPropagator` (its defaults) spreads the labeled rows' labels over a kNN graph of the embeddings. Each round's
check score is the graph agreement: the share of unlabeled rows on which the round's model predicts the graph's
class, each row weighted by the graph's certainty there (1 − normalised entropy of its label distribution; rows the
graph leaves unlabeled weigh 0). At the end of the run the model of the round with the highest score is kept (the
later round on a tie), round 0 (labeled-only) included. The same graph is the graph prior of the pseudo-labels when
``graph_prior_weight`` > 0 (`uses_graph`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from accelerate.logging import get_logger

from hf_ssl.graph.propagation import LabelPropagator
from hf_ssl.trainer.graph_spreading import spread_over_pools
from hf_ssl.trainer.round_report import write_round_line
from hf_ssl.trainer.state import load_ssl_state
from hf_ssl.utils import write_file_atomic

logger = get_logger(__name__)

__all__ = ["BEST_WEIGHTS_NAME", "SafeguardMixin", "best_round", "graph_agreement", "kept_round_message"]

BEST_WEIGHTS_NAME = "checkpoint-safeguard-weights.pt"
"""The best round's weights so far, beside the checkpoints (when there are checkpoints)."""


def _score(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.3f}"


def graph_agreement(probs: np.ndarray, graph_labels: np.ndarray, weights: np.ndarray) -> float | None:
    """Weighted share of rows whose most probable class in ``probs`` is ``graph_labels``.

    Parameters:
        probs (`np.ndarray`): (n, C) class probabilities of the model.
        graph_labels (`np.ndarray`): (n,) the graph's class per row (-1: none).
        weights (`np.ndarray`): (n,) non-negative weight per row (the graph's certainty).

    Returns:
        The agreement in [0, 1], or None when the weights sum to 0 (the graph labels no row).
    """
    weights = np.where(graph_labels >= 0, weights, 0.0).astype(np.float64)
    total = weights.sum()
    if total <= 0:
        return None
    return float((weights * (probs.argmax(axis=1) == graph_labels)).sum() / total)


def best_round(scores: dict[int, float | None]) -> int | None:
    """The round with the highest score (the later one on a tie); None when no round has a score."""
    scored = [(score, round) for round, score in scores.items() if score is not None]
    return max(scored)[1] if scored else None


def kept_round_message(scores: dict[int, float | None], kept: int, last: int) -> str:
    """What the run says when it keeps the model of round ``kept`` instead of the last round's."""
    listed = ", ".join(f"round {r}: {_score(s)}" for r, s in sorted(scores.items()))
    return (f"Safeguard: round {kept}'s model agrees best with the graph of the pretrained embeddings (graph "
            f"agreement per round: {listed}); the trainer keeps round {kept}'s model, not the last round's "
            f"({last}). safeguard='none' keeps the last round.")


class SafeguardMixin:
    """The graph check of each round and the kept model, for `SelfTrainingTrainer` (see the module docstring).

    Call `init_safeguard` in ``__init__``, `reset_safeguard` when a fresh run starts, `load_safeguard_weights` when
    one resumes, `fit_graph_check` before round 0 trains, `check_round` at each round's end and `keep_best_round`
    after the run. With ``load_best_model_at_end`` the Trainer's best checkpoint is kept and the check only reports.

    Attributes:
        kept_round (`int` or `None`): the round whose model the trainer holds after `train` (None before, or when
            ``load_best_model_at_end`` kept a checkpoint that ends no round).
        check_labels, check_weights (`np.ndarray` or `None`): the graph's class and certainty per unlabeled row.
    """

    def init_safeguard(self) -> None:
        """Reject pools too small for the graph, before anything trains."""
        self.reset_safeguard()
        if self.uses_graph:
            rows = len(self.train_dataset) + len(self.unlabeled_dataset)
            k = LabelPropagator().n_neighbors
            if rows <= k:
                raise ValueError(f"safeguard='graph' and graph_prior_weight > 0 build a {k}-nearest-neighbour graph "
                                 f"over train_dataset and unlabeled_dataset, which have {rows} rows together. Pass "
                                 "larger pools, or safeguard='none' (keep the last round without a check) with "
                                 "graph_prior_weight=0.")

    def reset_safeguard(self) -> None:
        """Forget the graph, the scores' best round and the kept round (a new run starts)."""
        self.kept_round: int | None = None
        self.check_labels: np.ndarray | None = None
        self.check_weights: np.ndarray | None = None
        self._best: dict[str, Any] | None = None  # round, score, CPU state dict

    @property
    def safeguard_on(self) -> bool:
        """Whether the rounds are checked (``safeguard="graph"`` and at least one pseudo-labeling round)."""
        return self.args.safeguard == "graph" and self.args.max_rounds > 0

    @property
    def uses_graph(self) -> bool:
        """Whether the run spreads the labels over the initial embeddings: for the safeguard's check, or for the
        graph prior of the pseudo-labels (``graph_prior_weight`` > 0)."""
        return self.args.max_rounds > 0 and (self.args.safeguard == "graph" or self.args.graph_prior_weight > 0)

    @property
    def _keeps_weights(self) -> bool:
        return self.safeguard_on and not self.args.load_best_model_at_end

    def fit_graph_check(self) -> None:
        """Spread the labels over the current (initial) model's embeddings of both pools; keep the graph's class and
        certainty of each unlabeled row."""
        spread = spread_over_pools(self, LabelPropagator(random_state=self.args.seed))
        n = len(self.train_dataset)
        self.check_labels = np.asarray(spread.transduction_[n:], dtype=np.int64)
        self.check_weights = np.asarray(spread.certainty_[n:], dtype=np.float32)
        logger.info(f"Safeguard: graph over {len(spread.transduction_)} rows, "
                    f"{int((self.check_labels >= 0).sum())} unlabeled rows labeled.", main_process_only=True)

    def check_round(self, record: dict[str, Any], probs: np.ndarray) -> None:
        """Score the round of ``record`` from its model's ``probs`` over the unlabeled pool; keep its weights when it
        is the best round so far."""
        score = graph_agreement(probs, self.check_labels, self.check_weights)
        record["check"] = {"graph_agreement": score}
        if score is not None:
            self.log({"ssl_graph_agreement": score, "ssl_round": self.round})
        if not self._keeps_weights or score is None or (self._best is not None and score < self._best["score"]):
            return
        model = self.accelerator.unwrap_model(self.model)
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self._best = {"round": record["round"], "score": score, "state": state}
        if self.args.should_save and self.args.save_strategy != "no":
            payload = {"round": record["round"], "score": score, "state_dict": state}
            write_file_atomic(os.path.join(self.args.output_dir, BEST_WEIGHTS_NAME),
                              lambda handle: torch.save(payload, handle))

    def load_safeguard_weights(self, checkpoint: str) -> None:
        """On a resume, restore the best round's weights so far from beside ``checkpoint``; warn when they are
        missing or belong to another state of the run (then only later rounds can be kept)."""
        self.reset_safeguard()
        state = load_ssl_state(checkpoint)
        round = int(state.get("safeguard_best_round", -1))
        if not self._keeps_weights or round < 0:
            return
        path = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), BEST_WEIGHTS_NAME)
        saved = torch.load(path, weights_only=True, map_location="cpu") if os.path.exists(path) else None
        if saved is None or int(saved["round"]) != round:
            found = "is missing" if saved is None else f"holds round {int(saved['round'])}'s weights"
            logger.warning(f"{path} {found}, not those of round {round}, the best round by the safeguard's check "
                           f"before {checkpoint}: only the rounds run from here on can be kept.",
                           main_process_only=True)
            return
        self._best = {"round": round, "score": float(saved["score"]), "state": saved["state_dict"]}

    def keep_best_round(self) -> None:
        """After the run: hold the model of the best round by the check (unless ``load_best_model_at_end``), and say
        so when it is not the last round's."""
        if not self.rounds:
            return
        last = self.rounds[-1]["round"]
        if not self.safeguard_on:
            self.kept_round = last
            return
        if self.args.load_best_model_at_end:
            best = self.state.best_model_checkpoint
            step = int(best.rsplit("-", 1)[1]) if best else self.rounds[-1]["global_step"]
            self.kept_round = next((r["round"] for r in self.rounds if r["global_step"] == step), None)
            return
        if "check" not in self.rounds[-1]:  # a round cut short by a callback
            self.check_round(self.rounds[-1], self.predict_unlabeled_probs())
            self._write_rounds()
        kept = self._best["round"] if self._best is not None else last
        self.kept_round = kept
        if kept == last:
            return
        self.accelerator.unwrap_model(self.model).load_state_dict(self._best["state"])
        message = kept_round_message(self.check_scores(), kept, last)
        logger.warning(message, main_process_only=True)
        write_round_line(self.args, self.state, message)

    def check_scores(self) -> dict[int, float | None]:
        """The graph agreement of each checked round."""
        return {r["round"]: r["check"]["graph_agreement"] for r in self.rounds if "check" in r}

    def kept_model_note(self) -> str | None:
        """What the model card says about the round whose model this is, or None when there is no round."""
        if not self.rounds or (self.kept_round is None and not (self.args.load_best_model_at_end
                                                                and self.state.best_model_checkpoint)):
            return None  # not trained yet
        last = self.rounds[-1]["round"]
        if self.args.max_rounds == 0:
            return None  # one round: nothing to choose
        if not self.safeguard_on:
            return f"This is the model of the last round ({last}); `safeguard='none'`: no round was checked."
        scores = self.check_scores()
        best = best_round(scores)
        if self.args.load_best_model_at_end:
            which = "a checkpoint that ends no round" if self.kept_round is None else f"round {self.kept_round}"
            return (f"This is the Trainer's best checkpoint by `{self.args.metric_for_best_model}` "
                    f"(`load_best_model_at_end=True`: {which}); the safeguard only reports, its graph check scored "
                    f"round {best} best.")
        if self.kept_round == last:
            return (f"This is the model of the last round ({last}), which the safeguard's graph check "
                    "(`safeguard='graph'`) scored best.")
        return (f"This is the model of round {self.kept_round}, not of the last round ({last}): the safeguard "
                f"(`safeguard='graph'`) kept the round whose predictions agree best with label spreading over the "
                f"pretrained model's embeddings (graph agreement {_score(scores.get(self.kept_round))}, last round "
                f"{_score(scores.get(last))}; each round's score is in the table above). "
                "`safeguard='none'` keeps the last round.")

    # ----------------------------------------------------------------- state
    def ssl_state_dict(self) -> dict[str, Any]:
        state = super().ssl_state_dict()
        if self.check_labels is not None:
            state |= {"check_labels": torch.from_numpy(self.check_labels),
                      "check_weights": torch.from_numpy(self.check_weights),
                      "safeguard_best_round": -1 if self._best is None else int(self._best["round"])}
        return state

    def check_ssl_state(self, state: dict[str, Any]) -> None:
        super().check_ssl_state(state)
        if self.uses_graph and "check_labels" not in state:
            raise ValueError("The checkpoint was written without the graph of the initial embeddings "
                             "(safeguard='none', graph_prior_weight=0), but this run uses it: resume with those "
                             "settings, or start afresh.")

    def load_ssl_state_dict(self, state: dict[str, Any]) -> None:
        super().load_ssl_state_dict(state)
        if "check_labels" in state:
            self.check_labels = state["check_labels"].numpy()
            self.check_weights = state["check_weights"].numpy()
