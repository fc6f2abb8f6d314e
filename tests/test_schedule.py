"""The build schedule shared by the graph prior and label propagation in the loop."""

from hf_ssl.trainer.schedule import EpochSchedule, due_epoch


def builds(start: float, every: int, epochs: int, done: int = -1) -> list[int]:
    made, last = [], done
    for e in range(epochs):
        epoch = due_epoch(float(e) if e else None, start, every, last)
        if epoch is not None:
            made.append(epoch)
            last = epoch
    return made


def test_once_at_start_and_every_n_after_start():
    assert builds(0, 0, 6) == [0]
    assert builds(0, 2, 6) == [0, 2, 4]
    assert builds(3, 0, 8) == [3]
    assert builds(3, 2, 8) == [3, 5, 7]


def test_fractional_warmup_rounds_up_and_float_noise_is_absorbed():
    assert builds(1.5, 0, 5) == [2]
    assert due_epoch(1.9999999, 2, 0, -1) == 2
    assert due_epoch(1.5, 0, 1, -1) == 1  # a mid-epoch resume floors to the epoch it is in


def test_builds_already_made_are_skipped_after_a_resume():
    assert builds(0, 2, 6, done=2) == [4]
    assert builds(0, 0, 6, done=0) == []


def test_callback_calls_build_with_the_due_epoch():
    class State:
        epoch = 4.0

    made: list[int] = []
    callback = EpochSchedule(made.append, lambda: made[-1] if made else -1, 0, 2)
    callback.on_epoch_begin(None, State(), None)
    callback.on_epoch_begin(None, State(), None)
    State.epoch = 5.0
    callback.on_epoch_begin(None, State(), None)
    assert made == [4]
