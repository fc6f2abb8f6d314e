"""Checkpoints that resume exactly and model files written whole: the saving and resuming part of `SSLTrainer`."""

from __future__ import annotations

import os
import re
from typing import Any

import torch
from accelerate.logging import get_logger
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput

from hf_ssl.trainer.state import checkpoint_folders, incomplete_reason, read_ssl_state, save_ssl_state
from hf_ssl.utils import move_files, remove_path, remove_temp_files, temp_path

logger = get_logger(__name__)

__all__ = ["CheckpointingMixin"]

_SHARD = re.compile(r"(model|pytorch_model|adapter_model)-\d{5}-of-\d{5}\.(safetensors|bin)")


class CheckpointingMixin:
    """hf_ssl state in every checkpoint, exact resumes, and files that appear whole or not at all.

    - Each checkpoint holds ``ssl_state.pt`` (`ssl_state_dict` of the trainer), written before the Trainer's files;
      the Trainer writes ``trainer_state.json`` last, so a checkpoint without both was interrupted and
      ``resume_from_checkpoint=True`` skips it with a warning.
    - ``resume_from_checkpoint`` is checked before anything trains: the folder must exist, hold hf_ssl state that
      `check_ssl_state` accepts, and be complete.
    - The training loss of `train` covers the whole run, also when it was resumed.
    - ``save_model`` writes into a temporary folder and renames each file into place; temporary files of a killed
      process are deleted by the next `train` or ``save_model``.

    Put it before `Trainer` in the bases; the trainer provides ``ssl_state_dict``, ``load_ssl_state_dict`` and
    ``check_ssl_state``.
    """

    _loss_total: float = 0.0
    _loss_window: torch.Tensor | None = None

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None,
              ignore_keys_for_eval: list[str] | None = None, **kwargs: Any) -> TrainOutput:
        """`Trainer.train` after checking ``resume_from_checkpoint`` (see `find_checkpoint`); the returned training
        loss is the mean over all the run's steps, those before the checkpoint included."""
        checkpoint = self.find_checkpoint(resume_from_checkpoint)
        if self.args.should_save:
            removed = remove_temp_files(self.args.output_dir, descend=PREFIX_CHECKPOINT_DIR + "-")
            if removed:
                logger.info(f"Removed temporary files of an interrupted run: {removed}", main_process_only=True)
        self._loss_total, self._loss_window = 0.0, None  # a resume restores the total (_load_from_checkpoint)
        output = super().train(resume_from_checkpoint=checkpoint, trial=trial,
                               ignore_keys_for_eval=ignore_keys_for_eval, **kwargs)
        self._drain_loss()
        loss = self._loss_total / max(output.global_step, 1)
        return TrainOutput(output.global_step, loss, {**output.metrics, "train_loss": loss})

    def find_checkpoint(self, resume_from_checkpoint: str | bool | None) -> str | None:
        """The checkpoint folder to resume from, checked, or None to start afresh.

        Parameters:
            resume_from_checkpoint (`str` or `bool` or `None`): a checkpoint folder, or `True` for the latest
                complete one of `checkpoint_candidates` (incomplete ones are skipped with a warning).

        Raises:
            ValueError: the folder does not exist, holds no hf_ssl state or state of another run, or is incomplete;
                or `True` finds no complete checkpoint.
        """
        if resume_from_checkpoint is None or resume_from_checkpoint is False:
            return None
        if resume_from_checkpoint is True:
            checkpoint = self._latest_complete_checkpoint()
        else:
            checkpoint = os.fspath(resume_from_checkpoint)
        self.check_ssl_state(read_ssl_state(checkpoint, type(self).__name__))
        reason = incomplete_reason(checkpoint)
        if reason is not None:
            raise ValueError(f"{checkpoint} is an incomplete checkpoint ({reason}): its write was interrupted. Resume "
                             "from an earlier checkpoint, or pass resume_from_checkpoint=True for the latest complete "
                             "one.")
        return checkpoint

    def checkpoint_candidates(self) -> list[str]:
        """The checkpoint folders of this run, newest first (the ``checkpoint-N`` folders of ``output_dir``)."""
        return checkpoint_folders(self.args.output_dir)

    def _latest_complete_checkpoint(self) -> str:
        for folder in self.checkpoint_candidates():
            reason = incomplete_reason(folder)
            if reason is None:
                return folder
            logger.warning(f"resume_from_checkpoint=True skips {folder}: not a complete hf_ssl checkpoint ({reason}; "
                           "its write was interrupted).", main_process_only=True)
        raise ValueError(f"resume_from_checkpoint=True, but {self.args.output_dir} holds no complete hf_ssl "
                         "checkpoint. Train without resume_from_checkpoint to start afresh.")

    # ----------------------------------------------------------------- the run's training loss
    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._loss_window = loss if self._loss_window is None else self._loss_window + loss
        return loss

    def _drain_loss(self) -> None:
        """Add the losses summed since the last drain (averaged over processes) to the run's total; every process
        calls it at the same steps (each checkpoint and the end of training)."""
        if self._loss_window is None:
            return
        window = self._loss_window.detach().float().reshape(1)
        if self.args.world_size > 1:
            window = self.accelerator.gather(window)
        self._loss_total += float(window.mean())
        self._loss_window = None

    # ----------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        self._drain_loss()
        folder = os.path.join(self._get_output_dir(trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.args.should_save:
            marker = os.path.join(folder, TRAINER_STATE_NAME)
            if os.path.exists(marker):  # an older save of this step: incomplete until the Trainer rewrites it
                os.remove(marker)
            save_ssl_state(folder, self.ssl_state_dict() | {"train_loss_total": self._loss_total})
        super()._save_checkpoint(model, trial)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        state = read_ssl_state(resume_from_checkpoint, type(self).__name__)
        self.load_ssl_state_dict(state)
        self._loss_total = float(state.get("train_loss_total", 0.0))
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        """`Trainer._save` into a temporary folder, then each file renamed into ``output_dir`` (the shards of an
        earlier sharded save that the new one does not overwrite are deleted, as ``save_pretrained`` does)."""
        output_dir = self.args.output_dir if output_dir is None else output_dir
        if not self.args.should_save:
            super()._save(output_dir, state_dict)
            return
        os.makedirs(output_dir, exist_ok=True)
        remove_temp_files(output_dir)
        staging = temp_path(os.path.join(output_dir, "save_model"))
        os.mkdir(staging)
        try:
            super()._save(staging, state_dict)
            moved = set(move_files(staging, output_dir))
        finally:
            remove_path(staging)
        for name in os.listdir(output_dir):
            if _SHARD.fullmatch(name) and name not in moved:
                os.remove(os.path.join(output_dir, name))
