"""Reliability suite: malformed or contradictory config values are rejected when the config is built (before any
trainer exists), with an error that names the field and the fix."""

from __future__ import annotations

import math

import pytest
from helpers.malformed import KINDS, base_config

NAN, INF = math.nan, math.inf


def _id(values: dict) -> str:
    return ",".join(f"{k}={v!r}" for k, v in values.items())

EVERY_CONFIG = [
    # non-finite floats (NaN would turn the weights to NaN while the logged loss reads 0)
    ({"learning_rate": NAN}, r"learning_rate must be a finite number, got nan"),
    ({"learning_rate": INF}, r"learning_rate must be a finite number, got inf"),
    ({"weight_decay": NAN}, r"weight_decay must be a finite number"),
    ({"num_train_epochs": NAN}, r"num_train_epochs must be a finite number"),
    ({"unlabeled_loss_weight": NAN}, r"unlabeled_loss_weight"),
    ({"unlabeled_batch_ratio": INF}, r"unlabeled_batch_ratio"),
    # non-integers for integer fields
    ({"per_device_train_batch_size": 2.5}, r"per_device_train_batch_size must be a whole number, got 2.5"),
    ({"max_steps": 1.5}, r"max_steps must be a whole number, got 1.5"),
    ({"gradient_accumulation_steps": 1.5}, r"gradient_accumulation_steps must be a whole number"),
    ({"seed": 0.5}, r"seed must be a whole number"),
    # nothing to train
    ({"num_train_epochs": 0}, r"num_train_epochs=0 trains nothing"),
    ({"num_train_epochs": -1}, r"num_train_epochs=-1 trains nothing"),
    ({"max_steps": 0}, r"max_steps=0 trains nothing"),
    # names hf_ssl uses itself
    ({"truth_column": "ssl_index"}, r"truth_column='ssl_index' is a column hf_ssl adds"),
    ({"truth_column": "label"}, r"truth_column='label' is a label column"),
    ({"truth_column": ""}, r"truth_column must be a non-empty column name"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("values,match", EVERY_CONFIG, ids=[_id(values) for values, _ in EVERY_CONFIG])
def test_malformed_value_of_every_config(tmp_path, kind, values, match):
    with pytest.raises(ValueError, match=match):
        base_config(kind, tmp_path, **values)


@pytest.mark.parametrize("kind", KINDS)
def test_output_dir_that_is_a_file(tmp_path, kind):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    with pytest.raises(ValueError, match=r"output_dir='.*a_file' is an existing file"):
        base_config(kind, tmp_path, output_dir=str(path))


ONE_CONFIG = [
    ("self_training", {"k_per_class": 2.5}, r"k_per_class must be a whole number, got 2.5"),
    ("self_training", {"max_rounds": 1.5}, r"max_rounds must be a whole number, got 1.5"),
    ("self_training", {"threshold": NAN}, r"threshold"),
    ("self_training", {"class_fraction": NAN}, r"class_fraction"),
    ("self_training", {"soft_label_temperature": INF}, r"soft_label_temperature"),
    ("consistency", {"softmatch_n_sigma": NAN}, r"softmatch_n_sigma must be a finite number"),
    ("consistency", {"softmatch_n_sigma": INF}, r"softmatch_n_sigma must be a finite number"),
    ("consistency", {"mixmatch_num_views": 1.5}, r"mixmatch_num_views must be a whole number, got 1.5"),
    ("consistency", {"unlabeled_loss_warmup_steps": 2.5}, r"unlabeled_loss_warmup_steps must be a whole number"),
    ("consistency", {"strong_augment_num_ops": 1.5}, r"strong_augment_num_ops must be a whole number"),
    ("consistency", {"randaugment_n": 1.5}, r"randaugment_n must be a whole number"),
    ("consistency", {"graph_prior_every": 0.5}, r"graph_prior_every must be a whole number"),
    ("consistency", {"contrastive_steps": 2.5}, r"contrastive_steps must be a whole number"),
    ("consistency", {"weak_augment_prob": NAN}, r"weak_augment_prob must be a finite number"),
    ("consistency", {"cutout": NAN}, r"cutout must be a finite number"),
    ("consistency", {"image_crop_padding": INF}, r"image_crop_padding must be a finite number"),
    ("consistency", {"temperature": NAN}, r"temperature"),
    ("consistency", {"ema_decay": NAN}, r"ema_decay"),
    ("consistency", {"method": "mixmatch", "threshold_strategy": "flexmatch"},
     r"threshold_strategy='flexmatch' does not apply to method='mixmatch'"),
    ("consistency", {"method": "mixmatch", "threshold_strategy": "softmatch"},
     r"threshold_strategy='softmatch' does not apply to method='mixmatch'"),
    ("consistency", {"method": "mean_teacher", "use_ema_teacher": False},
     r"method='mean_teacher'.*use_ema_teacher=False"),
    ("consistency", {"method": "mixmatch", "entropy_weight": 0.1}, r"entropy_weight=0.1 does not apply"),
    ("consistency", {"n_neighbors": 2.5}, r"n_neighbors must be a whole number"),
    ("consistency", {"power": INF}, r"power must be a finite number"),
    ("label_propagation", {"warmup_epochs": NAN}, r"warmup_epochs must be a finite number"),
    ("label_propagation", {"warmup_epochs": INF}, r"warmup_epochs must be a finite number"),
    ("label_propagation", {"warmup_epochs": 1, "num_train_epochs": 1},
     r"warmup_epochs=1 .*num_train_epochs=1.*never propagate"),
    ("label_propagation", {"warmup_epochs": 2.5, "num_train_epochs": 3},
     r"warmup_epochs=2.5 .*num_train_epochs=3.*never propagate"),
    ("label_propagation", {"propagate_every": 1.5}, r"propagate_every must be a whole number"),
    ("label_propagation", {"min_certainty": NAN}, r"min_certainty"),
    ("label_propagation", {"certainty_fraction": NAN}, r"certainty_fraction"),
    ("label_propagation", {"n_neighbors": 2.5}, r"n_neighbors must be a whole number"),
    ("label_propagation", {"encode_batch_size": 1.5}, r"encode_batch_size must be a whole number"),
    ("label_propagation", {"embedding_layer": 1.5}, r"embedding_layer must be a whole number"),
    ("label_propagation", {"power": NAN}, r"power must be a finite number"),
    ("label_propagation", {"power": INF}, r"power must be a finite number"),
    ("label_propagation", {"power": 0}, r"power must be a finite number > 0.*got 0"),
    ("label_propagation", {"alpha": NAN}, r"alpha"),
]


@pytest.mark.parametrize("kind,values,match", ONE_CONFIG, ids=[f"{k}-{_id(values)}" for k, values, _ in ONE_CONFIG])
def test_malformed_value_of_one_config(tmp_path, kind, values, match):
    with pytest.raises(ValueError, match=match):
        base_config(kind, tmp_path, **values)


@pytest.mark.parametrize("kind", KINDS)
def test_whole_floats_are_taken_as_integers(tmp_path, kind):
    config = base_config(kind, tmp_path, per_device_train_batch_size=4.0, max_steps=3.0)
    assert config.per_device_train_batch_size == 4 and isinstance(config.per_device_train_batch_size, int)
    assert config.max_steps == 3 and isinstance(config.max_steps, int)


IGNORED = [
    ("consistency", {"threshold_strategy": "freematch", "threshold": 0.9}, r"threshold=0.9 .*has no effect"),
    ("consistency", {"threshold_strategy": "softmatch", "threshold": 0.5}, r"threshold=0.5 .*has no effect"),
    ("consistency", {"method": "fixmatch", "temperature": 0.5}, r"temperature=0.5 .*has no effect"),
    ("consistency", {"graph_prior_weight": 0.0, "graph_prior_every": 2}, r"graph_prior_every=2 .*has no effect"),
    ("consistency", {"contrastive_learning_rate": 1e-3}, r"contrastive_learning_rate=0.001 .*has no effect"),
    ("self_training", {"soft_label_temperature": 0.5}, r"soft_label_temperature=0.5 has no effect"),
]


@pytest.mark.parametrize("kind,values,match", IGNORED, ids=[f"{k}-{_id(values)}" for k, values, _ in IGNORED])
def test_settings_without_effect_are_warned_about(tmp_path, kind, values, match):
    with pytest.warns(UserWarning, match=match):
        base_config(kind, tmp_path, **values)


@pytest.mark.parametrize("kind", KINDS)
def test_default_configs_warn_about_nothing(tmp_path, kind, recwarn):
    base_config(kind, tmp_path)
    assert [str(w.message) for w in recwarn if "has no effect" in str(w.message)] == []
