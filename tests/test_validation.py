"""Bad input is rejected before any training, with a message naming the argument or column and the fix."""

from __future__ import annotations

import math
import os

import pytest
from datasets import Dataset
from helpers.tiny import text_pool, tiny_bert
from transformers import TrainingArguments

from hf_ssl import ConsistencyConfig, LabelPropagationConfig, SelfTrainingConfig, SelfTrainingTrainer, SSLConfig
from hf_ssl.trainer.state import save_ssl_state


def args(tmp_path, **kw):
    return SelfTrainingConfig(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, **kw)


def build(tmp_path, labeled, unlabeled, model=None, **kw):
    return SelfTrainingTrainer(model=model or tiny_bert(), args=args(tmp_path, **kw), train_dataset=labeled,
                               unlabeled_dataset=unlabeled)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, math.nan, math.inf])
def test_threshold_outside_unit_interval(tmp_path, bad):
    with pytest.raises(ValueError, match="threshold"):
        args(tmp_path, threshold=bad)


@pytest.mark.parametrize("field,value", [("unlabeled_batch_ratio", 0), ("unlabeled_batch_ratio", -1),
                                         ("unlabeled_loss_weight", -0.5), ("max_rounds", -1),
                                         ("k_per_class", 0), ("class_fraction", 1.5),
                                         ("soft_label_temperature", 0)])
def test_config_ranges(tmp_path, field, value):
    with pytest.raises(ValueError, match=field):
        args(tmp_path, **{field: value})


def test_empty_labeled_pool(tmp_path, pools):
    labeled, unlabeled, _ = pools
    with pytest.raises(ValueError, match="train_dataset.*empty"):
        build(tmp_path, labeled.select([]), unlabeled)


def test_class_without_label(tmp_path, pools):
    labeled, unlabeled, _ = pools
    only_two = labeled.filter(lambda row: row["label"] != 2)
    with pytest.raises(ValueError, match=r"no labeled example of class\(es\) \['c2'\]"):
        build(tmp_path, only_two, unlabeled)


def test_labels_outside_num_labels(tmp_path, pools):
    labeled, unlabeled, _ = pools
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        build(tmp_path, labeled, unlabeled, model=tiny_bert(num_labels=2))


def test_unlabeled_marker_in_labeled_pool(tmp_path, pools):
    labeled, unlabeled, _ = pools
    raw = labeled.cast_column("label", labeled.features["label"].__class__(names=["c0", "c1", "c2"]))
    marked = Dataset.from_dict({**raw.to_dict(), "label": [-1] + raw["label"][1:]})
    with pytest.raises(ValueError, match="split_pools"):
        build(tmp_path, marked, unlabeled)


def test_string_labels_without_classlabel(tmp_path, pools):
    labeled, unlabeled, _ = pools
    strings = Dataset.from_dict({**labeled.to_dict(), "label": [f"c{y}" for y in labeled["label"]]})
    with pytest.raises(ValueError, match="class_encode_column"):
        build(tmp_path, strings, unlabeled)


def test_missing_label_column(tmp_path, pools):
    labeled, unlabeled, _ = pools
    with pytest.raises(ValueError, match="no label column"):
        build(tmp_path, labeled.rename_column("label", "category"), unlabeled)


def test_label_names_disagree_with_model(tmp_path, pools):
    labeled, unlabeled, _ = pools
    model = tiny_bert(id2label={0: "x", 1: "y", 2: "z"}, label2id={"x": 0, "y": 1, "z": 2})
    with pytest.raises(ValueError, match="id2label"):
        build(tmp_path, labeled, unlabeled, model=model)


def test_unlabeled_missing_input_column(tmp_path, pools):
    labeled, unlabeled, _ = pools
    with pytest.raises(ValueError, match=r"unlabeled_dataset is missing column\(s\) \['input_ids'\]"):
        build(tmp_path, labeled, unlabeled.remove_columns("input_ids"))


def test_empty_unlabeled_pool(tmp_path, pools):
    labeled, unlabeled, _ = pools
    with pytest.raises(ValueError, match="unlabeled_dataset is empty"):
        build(tmp_path, labeled, unlabeled.select([]))


def test_unlabeled_pool_with_real_labels(tmp_path, pools, tokenizer):
    labeled, _, _ = pools
    with pytest.raises(ValueError, match="truth_column"):
        build(tmp_path, labeled, text_pool(tokenizer, 10))


def test_missing_unlabeled_pool(tmp_path, pools):
    labeled, _, _ = pools
    with pytest.raises(ValueError, match="unlabeled_dataset="):
        build(tmp_path, labeled, None)


def test_plain_training_arguments_rejected(tmp_path, pools):
    labeled, unlabeled, _ = pools
    with pytest.raises(TypeError, match="SelfTrainingConfig"):
        SelfTrainingTrainer(model=tiny_bert(), args=TrainingArguments(str(tmp_path)), train_dataset=labeled,
                            unlabeled_dataset=unlabeled)


def test_resume_from_checkpoint_of_another_method(tmp_path, pools):
    labeled, unlabeled, _ = pools
    folder = str(tmp_path / "other")
    save_ssl_state(folder, {"method": "fixmatch", "unlabeled_batches_consumed": 0})
    trainer = build(tmp_path, labeled, unlabeled)
    with pytest.raises(ValueError, match="fixmatch"):
        trainer.train(resume_from_checkpoint=folder)
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


# ----------------------------------------------------------------------------- model inputs (every trainer)
def test_empty_text_rows_rejected(tmp_path, pools):
    labeled, unlabeled, _ = pools
    emptied = unlabeled.map(lambda row, i: {"input_ids": [] if i == 3 else row["input_ids"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"unlabeled_dataset has 1 row\(s\) with empty input_ids.*\[3\]"):
        build(tmp_path, labeled, emptied)


def test_tokenizer_that_does_not_match_the_model(tmp_path, pools):
    labeled, unlabeled, _ = pools
    shifted = labeled.map(lambda row: {"input_ids": [i + 100 for i in row["input_ids"]]})
    with pytest.raises(ValueError, match="processing_class.*does not match the model"):
        build(tmp_path, shifted, unlabeled)


def test_images_with_the_wrong_number_of_channels(tmp_path):
    import numpy as np
    from transformers import ViTConfig, ViTForImageClassification

    from hf_ssl import ConsistencyConfig, ConsistencyTrainer

    vit = ViTForImageClassification(ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                              num_attention_heads=2, intermediate_size=32, num_labels=2))
    gray = np.zeros((4, 1, 16, 16), dtype=np.float32).tolist()
    labeled = Dataset.from_dict({"pixel_values": gray, "label": [0, 1, 0, 1]})
    unlabeled = Dataset.from_dict({"pixel_values": gray})
    with pytest.raises(ValueError, match="pixel_values have 1 channel.*expects 3"):
        ConsistencyTrainer(model=vit, args=ConsistencyConfig(output_dir=str(tmp_path), report_to="none"),
                           train_dataset=labeled, unlabeled_dataset=unlabeled)
    assert not os.listdir(tmp_path)  # nothing written


@pytest.mark.parametrize("texts", [["a b", None, "c"], ["a b", "   ", "c"]])
def test_none_or_blank_texts_rejected_before_tokenizing(texts):
    from hf_ssl.data.validation import check_texts

    with pytest.raises(ValueError, match=r"empty or None text\(s\) in column 'text' \(rows \[1\]\)"):
        check_texts(Dataset.from_dict({"text": texts}), "text", "train")
    with pytest.raises(ValueError, match="--text_column"):
        check_texts(Dataset.from_dict({"body": ["x"]}), "text", "train")


def test_consistency_trainer_without_tokenizer_or_augmenter(tmp_path, pools):
    from hf_ssl import ConsistencyConfig, ConsistencyTrainer

    labeled, unlabeled, _ = pools
    with pytest.raises(ValueError, match="processing_class=tokenizer"):
        ConsistencyTrainer(model=tiny_bert(), args=ConsistencyConfig(output_dir=str(tmp_path), report_to="none"),
                           train_dataset=labeled, unlabeled_dataset=unlabeled)


def test_consistency_resume_with_another_method(tmp_path, pools, tokenizer):
    from hf_ssl import ConsistencyConfig, ConsistencyTrainer

    labeled, unlabeled, _ = pools
    folder = str(tmp_path / "other")
    save_ssl_state(folder, {"method": "consistency", "consistency_method": "uda", "unlabeled_batches_consumed": 0})
    trainer = ConsistencyTrainer(model=tiny_bert(), args=ConsistencyConfig(output_dir=str(tmp_path / "o"),
                                                                           report_to="none", use_cpu=True),
                                 train_dataset=labeled, unlabeled_dataset=unlabeled, processing_class=tokenizer)
    with pytest.raises(ValueError, match="'uda' run but method is 'fixmatch'"):
        trainer.train(resume_from_checkpoint=folder)


@pytest.mark.parametrize("config_class", [SSLConfig, SelfTrainingConfig, ConsistencyConfig, LabelPropagationConfig])
def test_output_dir_is_the_first_positional_argument_of_every_config(tmp_path, config_class):
    config = config_class(str(tmp_path / "out"), report_to="none")
    assert config.output_dir == str(tmp_path / "out")
