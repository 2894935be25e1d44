"""Fine-tuning a network of the space (the searched one, or a pruned one) by distillation from the supernet's largest
network (`learning.distill_loss`, the loss supernet training gives its sub-networks), and scoring it on training images
held out of the fine-tuning."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from edgenas.compress.prune_config import DistillConfig
from edgenas.data import Split, resize, to_input
from edgenas.learning import cosine_schedule, distill_loss, optimizer, shift_augment
from edgenas.progress import bar
from edgenas.supernet.evaluate import BN_CALIBRATION_IMAGES, recalibrate_bn
from edgenas.supernet.train_config import TrainConfig


class Distiller:
    """Fine-tunes pruned networks on the training split less `holdout` images, which score the candidates
    (validation accuracy is for the report only). The loss is the KL divergence to the teacher's predictions
    plus cross-entropy on the labels, with the random shifts supernet training used."""

    def __init__(self, teacher: nn.Module, split: Split, cfg: DistillConfig, resolution: int):
        self.teacher, self.cfg, self.res, self.norm = teacher.eval(), cfg, resolution, split.normalization
        self.teacher_res = teacher.arch.resolution
        hold = min(cfg.holdout, len(split.train_y) // 5)
        self.n = len(split.train_y) - hold
        self.x, self.y = split.train_x[: self.n], torch.as_tensor(split.train_y[: self.n])
        self.hold_x = self._input(split.train_x[self.n:])
        self.hold_y = torch.as_tensor(split.train_y[self.n:])
        self.cal = self._input(self.x[:BN_CALIBRATION_IMAGES])
        self.per_epoch = max(1, self.n // cfg.batch_size)

    def _input(self, images) -> torch.Tensor:
        return to_input(images, self.norm, self.res).contiguous(memory_format=torch.channels_last)

    def batches(self, steps: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """`steps` shifted training batches at the student's resolution, with the teacher's soft predictions and the
        labels. Made once, they serve every candidate of a NetAdapt step: the teacher runs once instead of once per
        candidate, and candidates are compared on the same images."""
        bs, order = min(self.cfg.batch_size, self.n), None
        for s in range(steps):
            if s % self.per_epoch == 0:
                order = torch.randperm(self.n, generator=gen).numpy()
            idx = order[(s % self.per_epoch) * bs:(s % self.per_epoch + 1) * bs]
            x = shift_augment(to_input(self.x[idx], self.norm), TrainConfig.shift, gen)
            with torch.no_grad():
                soft = F.softmax(self.teacher(resize(x, self.teacher_res).contiguous(memory_format=torch.channels_last)), 1)
            yield resize(x, self.res).contiguous(memory_format=torch.channels_last), soft, self.y[idx]

    @staticmethod
    def fit(net: nn.Module, batches: Iterable, opt, sched=None, progress=None) -> None:
        """Distillation on `batches`: KL divergence to the teacher plus cross-entropy on the labels."""
        net.train()
        for x, soft, y in batches:
            loss = distill_loss(net(x), soft, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if progress is not None:
                progress.update()

    def optimizer(self, net: nn.Module) -> torch.optim.Optimizer:
        return optimizer(net.parameters(), self.cfg.lr, TrainConfig.weight_decay)  # as the supernet was trained

    def finetune(self, net: nn.Module, epochs: int, state: dict, checkpoint, label: str = "fine-tune") -> None:
        """`epochs` of distillation, cosine learning rate to zero, resuming from `state["finetune"]`; `checkpoint()`
        after every epoch (it saves `state`)."""
        total = epochs * self.per_epoch
        if not total:
            return
        opt = self.optimizer(net)
        sched = cosine_schedule(opt, total)
        done = 0
        if state.get("finetune"):
            opt.load_state_dict(state["finetune"]["optimizer"])
            sched.load_state_dict(state["finetune"]["scheduler"])
            done = state["finetune"]["epochs_done"]
        with bar(total, label, initial=done * self.per_epoch, unit="step") as progress:
            for epoch in range(done, epochs):
                gen = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
                self.fit(net, self.batches(self.per_epoch, gen), opt, sched, progress)
                state["finetune"] = {"epochs_done": epoch + 1, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
                checkpoint()

    def score(self, net: nn.Module) -> tuple[float, float]:
        """Held-out accuracy and cross-entropy, after recalibrating BatchNorm (pruning shifts every statistic after
        the unit). The supernet trained on these images too, so accuracy saturates and ties; the loss breaks ties."""
        net = recalibrate_bn(net, self.cal)
        with torch.no_grad():
            logits = net(self.hold_x)
        return (logits.argmax(1) == self.hold_y).sum().item() / len(self.hold_y), F.cross_entropy(logits, self.hold_y).item()
