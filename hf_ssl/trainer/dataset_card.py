"""Dataset cards for exported pseudo-labeled datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

__all__ = ["PseudoLabelCardData", "pseudo_label_dataset_card"]

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


@dataclass
class PseudoLabelCardData:
    """Everything the dataset card of a pseudo-labeled export shows; `SelfTrainingTrainer` fills it.

    Parameters:
        method_name (`str`): short method id, also a card tag (e.g. ``"self_training"``).
        method_title (`str`): the method's name in prose.
        model (`str`): what produced the labels (the model's ``_name_or_path`` or class name).
        n_labeled (`int`): labeled examples the model was trained on.
        n_unlabeled (`int`): rows of the unlabeled pool.
        n_rows (`int`): pseudo-labeled rows in the export.
        selection (`str`): how the rows were selected, in prose (e.g. ``"confidence >= 0.9"``).
        class_names (`list[str]`): names of the ``pseudo_label`` classes.
        rounds (`list[list[Any]]`, defaults to ``[]``): one row per round that produced pseudo-labels: round, rows
            selected, new rows, mean confidence, accuracy against held-back labels.
    """

    method_name: str
    method_title: str
    model: str
    n_labeled: int
    n_unlabeled: int
    n_rows: int
    selection: str
    class_names: list[str]
    rounds: list[list[Any]] = field(default_factory=list)


def pseudo_label_dataset_card(data: PseudoLabelCardData, title: str = "Pseudo-labeled dataset",
                              **card_data: Any) -> DatasetCard:
    """Render the dataset card of a pseudo-labeled export.

    Parameters:
        data (`PseudoLabelCardData`): what the card shows.
        title (`str`, defaults to `"Pseudo-labeled dataset"`): card title.
        **card_data: extra `DatasetCardData` fields (e.g. ``license``, ``language``).
    """
    front_matter = DatasetCardData(tags=["hf_ssl", "pseudo-labels", data.method_name], **card_data)
    return DatasetCard.from_template(
        front_matter, template_str=_TEMPLATE, title=title, method=data.method_title, model=data.model,
        n_labeled=data.n_labeled, n_unlabeled=data.n_unlabeled, n_rows=data.n_rows, selection=data.selection,
        rounds=data.rounds, class_names=data.class_names,
    )
