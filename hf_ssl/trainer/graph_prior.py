"""The graph prior of `ConsistencyTrainer` (``graph_prior_weight`` > 0): build, schedule, mix, state and records.

Label spreading over the model's own embeddings of both pools gives every unlabeled row a class; that class is mixed
into the row's weak-view target, (1 − w)·p + w·onehot(class), before the threshold. The graph is built at the start
of the epochs that ``graph_prior_every`` names (once, before training, by default).
"""

from __future__ import annotations

from typing import Any

import torch

from hf_ssl.methods.losses import mix_graph_prior
from hf_ssl.trainer.graph_spreading import GraphSpreadingMixin
from hf_ssl.trainer.schedule import EpochSchedule

__all__ = ["GraphPriorMixin"]


class GraphPriorMixin(GraphSpreadingMixin):
    """Adds the graph prior to an `SSLTrainer` whose config has ``graph_prior_weight`` and ``graph_prior_every``.

    Call `init_graph_prior` from ``__init__``; `apply_graph_prior` on the weak-view targets. The graph's classes and
    records are saved with the checkpoint state (through ``ssl_state_dict`` / ``load_ssl_state_dict``).

    Attributes:
        graph_labels (`torch.Tensor` or `None`): class per unlabeled row from the last build, -1 for none; None
            before the first build or when the prior is off.
        graph_records (`list[dict]`): one record per build (epoch, rows with a class, accuracy against the hidden
            truth column when present).
    """

    def init_graph_prior(self) -> None:
        """Schedule the builds when ``graph_prior_weight`` > 0."""
        self.graph_labels: torch.Tensor | None = None
        self.graph_records: list[dict[str, Any]] = []
        if self.args.graph_prior_weight > 0:
            self.check_graph_size()
            self.add_callback(EpochSchedule(self.build_graph_prior, self._last_graph_epoch, 0,
                                            self.args.graph_prior_every))

    def build_graph_prior(self, epoch: int = 0) -> dict[str, Any]:
        """Spread the labels over a kNN graph of the current model's embeddings of both pools; the classes become
        the graph prior of the weak-view targets (``graph_prior_weight``).

        Parameters:
            epoch (`int`, *optional*, defaults to `0`): the epoch this graph precedes (recorded).
        """
        spread = self.spread_labels()
        graph = spread.transduction_[len(self.train_dataset):]
        self.graph_labels = torch.as_tensor(graph, dtype=torch.long)
        record: dict[str, Any] = {"epoch": epoch, "rows": int((graph >= 0).sum())}
        truth = self.truth_labels()
        if truth is not None:
            record["graph_accuracy"] = float((graph == truth).mean())
        self.graph_records.append(record)
        self.log({f"ssl_graph_{k}": float(v) for k, v in record.items()})
        return record

    def apply_graph_prior(self, probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``probs`` mixed with the graph's classes of the rows (``index``: their positions in the unlabeled pool);
        unchanged before the first build."""
        if self.graph_labels is None:
            return probs
        graph = self.graph_labels[index.cpu()].to(probs.device)
        return mix_graph_prior(probs, graph, self.args.graph_prior_weight)

    def _last_graph_epoch(self) -> int:
        return self.graph_records[-1]["epoch"] if self.graph_records else -1

    def ssl_state_dict(self) -> dict[str, Any]:
        state = super().ssl_state_dict()
        if self.graph_labels is not None:
            state["graph_labels"] = self.graph_labels.clone()
            state["graph_records"] = self.graph_records
        return state

    def load_ssl_state_dict(self, state: dict[str, Any]) -> None:
        super().load_ssl_state_dict(state)
        if "graph_labels" in state:
            self.graph_labels = state["graph_labels"].clone()
            self.graph_records = list(state["graph_records"])
