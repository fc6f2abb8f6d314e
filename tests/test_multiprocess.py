"""Several CPU processes (gloo) through `accelerate launch --multi_gpu --num_processes 2` with ``use_cpu``; see
tests/helpers/mp_launch.py.

The trainer scripts compare 2 processes with 1 process and twice the per-device batch (the same global batch). They
turn dropout off, so the two runs differ only by float summation order (gradients all-reduced over two halves,
padding per device): losses agree to ~1e-6 on this toy task, and the tolerances below leave room for that noise
only (a different labeled batch, or a loss scaled by the number of processes, shows in the first loss). Consistency
training is the exception after its first step: see its test. The recipe test runs every recipe on its real default
model under 2 processes and checks that only the main process writes the outputs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import load_from_disk
from helpers.mp_launch import HELPERS, ROOT, launch, two_vs_one
from huggingface_hub import ModelCard
from safetensors import safe_open

EVAL_ROWS = 61  # size of the scripts' evaluation pool


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path, tokenizer):
    ranks, single = two_vs_one("mp_selftrain_script.py", tokenizer, tmp_path, batch_size=2)
    # pseudo-labels identical on every rank
    assert ranks[0]["pseudo_rows"] == ranks[1]["pseudo_rows"] and ranks[0]["pseudo_labels"] == ranks[1]["pseudo_labels"]
    assert ranks[0]["eval_accuracy"] == ranks[1]["eval_accuracy"]
    # the safeguard's graph (each rank encodes a shard), check scores and kept round: identical on every rank
    for key in ("graph_labels", "graph_agreement", "kept_round"):
        assert ranks[0][key] == ranks[1][key], key
    assert ranks[0]["graph_labels"] == single["graph_labels"]
    # both runs learn the toy task and pseudo-label the pool
    assert len(ranks[0]["pseudo_rows"]) > 0 and len(single["pseudo_rows"]) > 0
    assert ranks[0]["round0_accuracy"] > 0.6 and single["round0_accuracy"] > 0.6
    # ... and agree with each other: same steps, same training loss each round (the labeled loss must not be
    # scaled by the number of processes), same round-0 and final accuracy up to one row, same pseudo-labels
    assert ranks[0]["steps"] == single["steps"] and ranks[0]["unlabeled_batches"] == single["unlabeled_batches"]
    np.testing.assert_allclose(ranks[0]["train_loss"], single["train_loss"], rtol=1e-4)
    assert abs(ranks[0]["round0_accuracy"] - single["round0_accuracy"]) <= 1 / EVAL_ROWS + 1e-9
    assert abs(ranks[0]["eval_accuracy"] - single["eval_accuracy"]) <= 1 / EVAL_ROWS + 1e-9
    two = dict(zip(ranks[0]["pseudo_rows"], ranks[0]["pseudo_labels"], strict=True))
    one = dict(zip(single["pseudo_rows"], single["pseudo_labels"], strict=True))
    agree = sum(two.get(row) == label for row, label in one.items())
    assert agree >= 0.98 * max(len(one), len(two))


@pytest.mark.slow
def test_consistency_state_identical_on_every_rank(tmp_path, tokenizer):
    ranks, single = two_vs_one("mp_consistency_script.py", tokenizer, tmp_path, batch_size=2)
    # threshold state, alignment statistics and EMA teacher are the same on every rank
    for key in ("row_class", "model_prior", "ema_classifier", "eval_accuracy", "mask_rate"):
        assert ranks[0][key] == ranks[1][key], key
    # the same number of global steps over the same global batch size as one process with 2x the batch
    assert ranks[0]["steps"] == single["steps"] and ranks[0]["unlabeled_batches"] == single["unlabeled_batches"]
    # the first step's labeled loss and teacher statistics (labeled rows, identity weak views, the initial model)
    # are those of one process; later steps differ by the strong views' random draws (each process draws for its
    # 2 rows, one process for 4), so from there on the runs only agree statistically
    for key in ("labeled_loss", "confidence", "mask_rate", "pseudo_label_accuracy"):
        assert ranks[0]["first_step"][key] == pytest.approx(single["first_step"][key], rel=1e-5), key
    # both learn the toy task beyond chance (1/3), and the thresholds saw confident rows in both
    assert ranks[0]["eval_accuracy"] > 0.5 and single["eval_accuracy"] > 0.5
    assert max(ranks[0]["row_class"]) >= 0 and max(single["row_class"]) >= 0


@pytest.mark.slow
def test_label_propagation_identical_on_every_rank_and_matches_one_process(tmp_path, tokenizer):
    ranks, single = two_vs_one("mp_labelprop_script.py", tokenizer, tmp_path, batch_size=2)
    # propagations at epochs 8 and 12 of 16; every rank holds the same pseudo-labels and records
    assert [r["epoch"] for r in ranks[0]["propagations"]] == [8, 12]
    assert ranks[0]["pseudo"] == ranks[1]["pseudo"] and ranks[0]["propagations"] == ranks[1]["propagations"]
    assert ranks[0]["eval_accuracy"] == ranks[1]["eval_accuracy"]
    # the records file (written by the main process) holds what the ranks hold
    on_disk = json.loads((tmp_path / "two" / "label_propagation.json").read_text())
    assert on_disk["propagations"] == ranks[0]["propagations"]
    # embeddings: each propagation encodes the labeled pool, then the unlabeled pool; every rank gets all 12 and
    # all 109 rows (uneven shards), in order, without duplicates: the same arrays on both ranks, matching one
    # process's embeddings of the (same) model row by row
    embeddings = [np.load(tmp_path / "two" / f"rank{i}_embeddings.npz") for i in range(2)]
    alone = np.load(tmp_path / "one" / "rank0_embeddings.npz")
    assert len(alone.files) == len(embeddings[0].files) == 2 * 2  # 2 propagations x 2 pools
    sizes = [ranks[0]["labeled"], ranks[0]["unlabeled"]] * 2
    for name, rows in zip(alone.files, sizes, strict=True):
        assert embeddings[0][name].shape == (rows, 16)
        np.testing.assert_array_equal(embeddings[0][name], embeddings[1][name])
        np.testing.assert_allclose(embeddings[0][name], alone[name], atol=1e-4)
    # the same steps and pseudo-labeled batches as one process with 2x the batch, the same per-step losses
    assert ranks[0]["steps"] == single["steps"] == 48
    assert ranks[0]["unlabeled_batches"] == single["unlabeled_batches"] > 0
    np.testing.assert_allclose(ranks[0]["losses"], single["losses"], rtol=1e-4)
    # the same pseudo-labels: every propagation labels the same rows, their classes agree on >= 98% of the rows
    # (float noise can only flip near-ties) and their weights are close
    for two, one in zip(ranks[0]["pseudo"], single["pseudo"], strict=True):
        assert two["rows"] == one["rows"] and len(one["rows"]) == ranks[0]["unlabeled"]
        agree = np.mean(np.argmax(two["targets"], axis=1) == np.argmax(one["targets"], axis=1))
        assert agree >= 0.98
        np.testing.assert_allclose(two["weights"], one["weights"], atol=1e-3)
    # both learn the toy task (chance is 1/3) and end within one evaluation row of each other
    assert single["eval_accuracy"] > 0.8
    assert abs(ranks[0]["eval_accuracy"] - single["eval_accuracy"]) <= 1 / EVAL_ROWS + 1e-9


@pytest.mark.slow
def test_ema_teacher_batch_norm_statistics_identical_on_every_rank(tmp_path):
    """Each rank's student updates its batch-norm statistics on its own rows; the teacher averages their mean over
    the processes, so it is the same on every rank."""
    launch(HELPERS / "mp_batchnorm_ema_script.py", [str(tmp_path)], nproc=2)
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and ranks[0]["updates"] == 4
    assert ranks[0]["student"] != ranks[1]["student"]  # the ranks' own statistics differ
    assert ranks[0]["teacher"] == ranks[1]["teacher"]


SHRINK = ["--num_train_epochs", "1", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"]
SELFTRAIN_YAML = ("labels_per_class: 2\nmax_unlabeled: 60\nmax_eval: 40\nmax_length: 32\nnum_train_epochs: 1\n"
                  "max_rounds: 1\nthreshold: 0.125\nreport_to: none\n")


@pytest.mark.slow
@pytest.mark.parametrize("recipe,flags,last_line,counts", [
    pytest.param("text_selftrain.py", ["--config", "{yaml}", "--save_strategy", "no", "--disable_tqdm", "true"],
                 "model, tokenizer and card saved to", {"labeled": 16, "unlabeled": 60, "test": 40, "rounds": 2},
                 id="text_selftrain"),
    pytest.param("text_consistency.py", [*SHRINK, "--labels_per_class", "2", "--max_unlabeled", "40", "--max_eval",
                                         "40", "--max_length", "32", "--method", "uda", "--baseline"],
                 "model and card saved to", {"labeled": 16, "unlabeled": 40, "test": 40, "method": "uda"},
                 id="text_consistency"),
    pytest.param("image_fixmatch.py", [*SHRINK, "--dataset", "mnist-5k", "--labels_per_class", "2", "--max_unlabeled",
                                       "40", "--max_eval", "40", "--contrastive_steps", "2",
                                       "--contrastive_batch_size", "8", "--threshold_strategy", "flexmatch",
                                       "--baseline"],
                 "model and card saved to",
                 {"labeled": 20, "unlabeled": 40, "test": 40, "threshold_strategy": "flexmatch"},
                 id="image_fixmatch"),
    pytest.param("image_fixmatch.py", [*SHRINK, "--model", "efficientnet-lite2", "--dataset", "mnist-5k",
                                       "--labels_per_class", "2", "--max_unlabeled", "40", "--max_eval", "40",
                                       "--image_size", "32", "--contrastive_steps", "2", "--contrastive_batch_size",
                                       "8", "--use_ema_teacher", "true", "--baseline"],
                 "model and card saved to", {"labeled": 20, "unlabeled": 40, "test": 40, "method": "fixmatch"},
                 id="image_fixmatch_efficientnet_lite2"),
    pytest.param("labelprop.py", ["--max_rows", "200", "--max_length", "48", "--select", "kmeans", "--budget", "16"],
                 "labels propagated to", {"rows": 200, "labeled": 16, "select": "kmeans"}, id="labelprop"),
])
def test_recipe_under_two_processes_writes_its_outputs_once(tmp_path, recipe, flags, last_line, counts):
    """Each recipe under `accelerate launch --multi_gpu --num_processes 2 ... --use_cpu true` on its real default
    model (packaged MiniLM / DINOv2; the image recipe also on EfficientNet-Lite2, batch norm and an EMA teacher,
    at 32 px), shrunk to seconds (the self-training recipe by a YAML ``--config``): exit code 0, the recipe's
    summary, exports, model and card, written by the main process only."""
    out, writes = tmp_path / "out", tmp_path / "writes"
    (tmp_path / "run.yaml").write_text(SELFTRAIN_YAML)
    flags = [flag.format(yaml=tmp_path / "run.yaml") for flag in flags]
    result = launch(HELPERS / "mp_audit_run.py", [str(out), str(writes), str(ROOT / "recipes" / recipe),
                                               "--output_dir", str(out), "--use_cpu", "true", *flags], nproc=2)
    # printed once (the prints sit with the summary's write, behind the main-process check)
    assert result.stdout.count(last_line) == 1, result.stdout[-2000:]
    written = {rank: (writes / f"writes-rank{rank}.txt").read_text().split() for rank in range(2)}
    assert written[1] == [], f"rank 1 wrote {written[1]}"
    assert written[0].count("summary.json") == 1, written[0]
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary[k] for k in counts} == counts
    assert not [p.name for p in out.iterdir() if p.name.startswith(".export-") or p.name.endswith(".tmp")]
    if recipe == "labelprop.py":
        exported = load_from_disk(str(out / "pseudo_labeled"))
        assert len(exported) == 200 and exported["source"].count("given") == 16
        assert set(exported.column_names) >= {"text", "label", "confidence", "source"}
        # propagation from 16 k-means representatives does far better than chance on R8's 8 classes
        assert summary["propagated_accuracy_vs_held_back_labels"] > 0.5
        return
    # the model, its config and card: written by the main process, complete
    assert written[0].count("config.json") == written[0].count("README.md") == 1, written[0]
    config = json.loads((out / "config.json").read_text())
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        assert weights.get_slice("classifier.weight").get_shape()[0] == len(config["id2label"]) > 1
        if "efficientnet-lite2" in flags:  # the backbone asked for, its running statistics saved with it
            assert config["model_type"] == "hf_ssl_efficientnet_lite"
            assert "efficientnet_lite.stem.bn.running_mean" in weights.keys()
    card = ModelCard.load(out / "README.md")
    assert "hf_ssl" in card.data.tags and card.data.library_name == "transformers"
    if recipe == "text_selftrain.py":
        assert "labeled-only accuracy:" in result.stdout and "self-training accuracy:" in result.stdout
        assert summary["termination"] == "max_rounds" and len(load_from_disk(str(out / "pseudo_labeled"))) == 60
        assert (out / "tokenizer.json").exists()
        assert "self_training" in card.data.tags and card.data.datasets == ["reuters-r8"]
    else:
        assert len(summary["epochs"]) == 1 and 0 <= summary["accuracy"] <= 1
        assert summary["labeled_only_accuracy"] is not None
