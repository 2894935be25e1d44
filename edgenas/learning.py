"""What every training in edgenas shares: the supernet's, the fine-tuning of a pruned network, and the baselines that
are trained from scratch to be compared with them. One augmentation, one optimizer with one schedule, and one
distillation loss (a student matches the soft predictions of a larger network, as the sandwich rule trains the
supernet's small networks and as pruning fine-tunes its result)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F



def shift_augment(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to `pixels`, padding with zeros (no wrap-around)."""
    if pixels <= 0:
        return x
    n, _, h, w = x.shape
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * pixels
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = t[:, 0].round() * 2 / w, t[:, 1].round() * 2 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def distill_loss(logits: torch.Tensor, soft: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """KL divergence from the teacher's soft predictions `soft`, plus cross-entropy on `labels` when given."""
    loss = F.kl_div(F.log_softmax(logits, dim=1), soft, reduction="batchmean")
    return loss if labels is None else loss + F.cross_entropy(logits, labels)


def optimizer(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


#: each later round of a restarting schedule starts from this share of the first round's peak (SGDR's warm restarts)
RESTART_PEAK = 0.5


def restarting_cosine(opt: torch.optim.Optimizer, rounds: list[int], warmup: int = 0):
    """A half cosine to zero over each round of steps in `rounds`, the first after a linear warm-up of `warmup` steps and
    from the full rate, each later one from `RESTART_PEAK` of it (SGDR's warm restarts). `rounds` is read on every step:
    a round appended to the list extends the schedule, and a resumed one rebuilds it from the same list."""
    def factor(step: int) -> float:
        start = 0
        for k, length in enumerate(rounds):
            if step < start + length or k == len(rounds) - 1:
                ramp = min(1.0, (step + 1) / warmup) if warmup and k == 0 else 1.0
                peak = 1.0 if k == 0 else RESTART_PEAK
                return ramp * peak * 0.5 * (1 + math.cos(math.pi * min(step - start, length) / length))
            start += length
        return 0.0

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def add_round(sched, rounds: list[int], steps: int) -> None:
    """Another round of `steps` on a `restarting_cosine` schedule that ran to the end of its rounds: the rate of the
    step it stands at is set again, from the new round's start instead of the end of the last one."""
    rounds.append(steps)
    sched.last_epoch -= 1
    sched.step()


def cosine_schedule(opt: torch.optim.Optimizer, total: int, warmup: int = 0):
    """The learning rate down a half cosine to zero over `total` steps, after a linear warm-up of `warmup` steps: a
    restarting cosine of one round."""
    return restarting_cosine(opt, [total], warmup)
