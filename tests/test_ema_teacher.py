"""The EMA teacher on a model with batch norm (tiny random EfficientNet-Lite): its running statistics are an EMA of
the student's, a teacher call leaves the student's buffers alone, and a resumed run restores them; integer buffers
(``num_batches_tracked``, BERT's ``position_ids``) are never averaged."""

from __future__ import annotations

import pytest
import torch
from helpers.checks import assert_same_state
from helpers.kill import KillAt, Killed
from helpers.tiny import tiny_bert, tiny_efficientnet_lite
from test_efficientnet_lite import common, split

from hf_ssl import ConsistencyConfig, ConsistencyTrainer
from hf_ssl.methods.ema import EMATeacher


def batch_norm_model() -> torch.nn.Module:
    """A tiny EfficientNet-Lite without dropout (the teacher's only noise), in train mode."""
    return tiny_efficientnet_lite(dropout_rate=0.0, drop_connect_rate=0.0).train()


def buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.detach().clone() for name, b in model.named_buffers()}


def test_teacher_buffers_are_an_ema_of_the_students_and_a_teacher_call_leaves_them_alone():
    model = batch_norm_model()
    ema = EMATeacher(model, decay=0.5)
    names = set(dict(model.named_buffers()))
    assert set(ema.shadow_buffers) == {n for n in names if n.endswith(("running_mean", "running_var"))}
    assert any(n.endswith("num_batches_tracked") for n in names)  # integer: shared, never averaged
    before = {k: v.clone() for k, v in ema.shadow_buffers.items()}
    x = torch.randn(4, 3, 16, 16) * 2 + 1
    model(pixel_values=x)  # a student forward in train mode moves its running statistics
    ema.update(model)
    student = buffers(model)
    decay = min(0.5, 1 / 10)
    name = "efficientnet_lite.stem.bn.running_mean"
    assert not torch.allclose(student[name], before[name])
    for key, value in ema.shadow_buffers.items():
        torch.testing.assert_close(value, before[key] * decay + student[key] * (1 - decay))
    shadow = {k: v.clone() for k, v in ema.shadow_buffers.items()}

    teacher = ema(model, {"pixel_values": x}).logits  # the model is in train mode
    assert_same_state(buffers(model), student, atol=0, where="student buffers after a teacher call")
    assert_same_state(ema.shadow_buffers, shadow, atol=0, where="shadow buffers after a teacher call")
    assert model.training and all(m.training for m in model.modules())
    # the teacher normalises with its EMA statistics: the swapped-in model in eval mode is the same function
    with ema.swapped_in(model):
        torch.testing.assert_close(dict(model.named_buffers())[name], shadow[name])
        swapped = model.eval()(pixel_values=x).logits
    torch.testing.assert_close(teacher, swapped)
    assert_same_state(buffers(model), student, atol=0, where="student buffers after swapped_in")


def test_update_averages_in_the_buffers_it_is_given():
    model = batch_norm_model()
    ema = EMATeacher(model, decay=0.5)
    given = {name: torch.full_like(b, 2.0) for name, b in ema.shadow_buffers.items()}  # e.g. a mean over ranks
    before = {k: v.clone() for k, v in ema.shadow_buffers.items()}
    ema.update(model, given)
    for key, value in ema.shadow_buffers.items():
        torch.testing.assert_close(value, before[key] * 0.1 + 2.0 * 0.9)


def test_state_dict_restores_the_shadow_buffers_and_rejects_a_state_without_them():
    model = batch_norm_model()
    ema = EMATeacher(model, decay=0.5)
    model(pixel_values=torch.randn(4, 3, 16, 16) + 3)
    ema.update(model)
    state = ema.state_dict()
    fresh = EMATeacher(batch_norm_model(), decay=0.5)
    fresh.load_state_dict(state)
    assert_same_state(fresh.shadow_buffers, ema.shadow_buffers, where="shadow buffers")
    assert_same_state(fresh.shadow, ema.shadow, where="shadow parameters")
    with pytest.raises(ValueError, match="floating-point buffers"):
        fresh.load_state_dict({k: v for k, v in state.items() if k != "shadow_buffers"})


def test_text_model_integer_buffers_are_left_alone():
    model = tiny_bert()
    ema = EMATeacher(model, decay=0.5)
    assert ema.shadow_buffers == {}  # position_ids, token_type_ids: integer buffers only
    position_ids = model.bert.embeddings.position_ids.clone()
    inputs = {"input_ids": torch.tensor([[2, 5, 6, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    model.eval()
    with ema.swapped_in(model):
        swapped = model(**inputs).logits
    torch.testing.assert_close(ema(model, inputs).logits, swapped)
    assert torch.equal(model.bert.embeddings.position_ids, position_ids)
    # a checkpoint written before buffers were kept still fits a model without float buffers
    state = {k: v for k, v in ema.state_dict().items() if k != "shadow_buffers"}
    EMATeacher(model, decay=0.5).load_state_dict(state)


def mean_teacher(tmp_path, model=None, callbacks=None) -> ConsistencyTrainer:
    labeled, unlabeled = split()
    args = ConsistencyConfig(**(common(tmp_path) | dict(save_strategy="steps")), method="mean_teacher", max_steps=4,
                             save_steps=2, randaugment_n=1, full_determinism=True)
    return ConsistencyTrainer(model=model or tiny_efficientnet_lite(), args=args, train_dataset=labeled,
                              unlabeled_dataset=unlabeled, callbacks=callbacks)


def test_resumed_mean_teacher_restores_the_teachers_running_statistics(tmp_path):
    first = mean_teacher(tmp_path / "first")
    first.train()
    start = EMATeacher(tiny_efficientnet_lite()).shadow_buffers
    assert any(not torch.allclose(first.ema.shadow_buffers[k], start[k]) for k in start)  # the teacher's moved
    killed = mean_teacher(tmp_path / "second", callbacks=[KillAt("on_save", 1)])
    with pytest.raises(Killed):
        killed.train()
    resumed = mean_teacher(tmp_path / "second", model=tiny_efficientnet_lite(seed=5))
    resumed.train(resume_from_checkpoint=True)
    assert resumed.ema.num_updates == first.ema.num_updates == 4
    for key, value in first.ema.shadow_buffers.items():
        torch.testing.assert_close(resumed.ema.shadow_buffers[key], value, atol=1e-6, rtol=1e-5)
