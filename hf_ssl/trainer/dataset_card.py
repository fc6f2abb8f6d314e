"""Dataset cards for exported pseudo-labeled datasets."""

from __future__ import annotations

from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData
from transformers import Trainer

__all__ = ["pseudo_label_dataset_card"]

_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

Pseudo-labeled rows produced by [hf_ssl](https://pypi.org/project/hf-ssl/) with **{{ method }}**.
The labels are model predictions, not human annotations: treat them as noisy.

## How it was produced

- model: `{{ model }}`
- labeled examples the model was trained on: {{ n_labeled }}
- unlabeled pool: {{ n_unlabeled }} rows, of which {{ n_rows }} are pseudo-labeled here
- selection: {{ selection }}

| round | rows selected | new | mean confidence | accuracy against held-back labels |
|---|---|---|---|---|
{% for row in rounds %}| {{ row | join(" | ") }} |
{% endfor %}
## Columns

- `pseudo_label`: the predicted class (a `ClassLabel`: {{ class_names | join(", ") }})
- `pseudo_confidence`: the teacher's probability of that class
- `pseudo_round`: the self-training round whose model first selected the row
- `source_index`: the row's index in the unlabeled pool
"""


def pseudo_label_dataset_card(trainer: Trainer, title: str = "Pseudo-labeled dataset",
                              **card_data: Any) -> DatasetCard:
    """Render the dataset card of a trainer's pseudo-labeled export.

    Args:
        trainer: a trained `Trainer`.
        title: card title.
        **card_data: extra `DatasetCardData` fields (e.g. ``license``, ``language``).
    """
    args = trainer.args
    selection = f"confidence >= {args.threshold}"
    if args.class_fraction is not None:
        selection += f", top {args.class_fraction:.0%} of each predicted class"
    if args.k_per_class is not None:
        selection += f", at most {args.k_per_class} per predicted class"
    rounds = []
    for record in trainer.rounds:
        stats = record.get("pseudo_labels")
        if stats:
            accuracy = stats.get("pseudo_label_accuracy")
            rounds.append([record["round"], stats["selected"], stats["new"], f"{stats['mean_confidence']:.3f}",
                           "n/a" if accuracy is None else f"{accuracy:.3f}"])
    model = trainer.accelerator.unwrap_model(trainer.model)
    data = DatasetCardData(tags=["hf_ssl", "pseudo-labels", trainer.method_name], **card_data)
    return DatasetCard.from_template(
        data, template_str=_TEMPLATE, title=title, method=trainer.method_info().title,
        model=getattr(model.config, "_name_or_path", type(model).__name__), n_labeled=int(trainer.labeled_counts.sum()),
        n_unlabeled=len(trainer.unlabeled_dataset), n_rows=len(trainer.pseudo_rows), selection=selection,
        rounds=rounds, class_names=trainer.class_names,
    )
