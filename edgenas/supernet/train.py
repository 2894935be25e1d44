"""`edgenas train`: the supernet on the user's data, with the sandwich rule and in-place distillation.

Each step trains the largest network on the labels, and the smallest and `random_subnets` random
networks on the largest one's soft predictions (BigNAS). Checkpoints are written after every epoch;
a re-run resumes after the last one. Under `torchrun` the same command trains with
DistributedDataParallel, each process on its share of every batch.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from edgenas.data import DEFAULT_DATA, Split, data_record, is_named, load_dataset, resize, split as split_data, to_input
from edgenas.errors import BadInput, Interrupted, one_line
from edgenas.jsonio import atomic_write_bytes, atomic_write_json, check_schema, now, read_json
from edgenas.learning import add_round, distill_loss, optimizer, restarting_cosine, shift_augment
from edgenas.progress import bar, say
from edgenas.space import Arch, SearchSpace
from edgenas.supernet.dynamic import Supernet
from edgenas.supernet.evaluate import SubnetEvaluator
from edgenas.supernet.threads import AdaptivePool
from edgenas.supernet.train_config import HOW_LONG, TrainConfig, near_chance
from edgenas.versions import versions

RUN_SCHEMA = "edgenas.supernet-run"
RUN_SCHEMA_VERSION = 1
CHECKPOINT = "checkpoint.pt"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class TrainResult:
    run_dir: str
    epochs: int
    resumed_from_epoch: int
    world_size: int
    seconds: float
    history: list

    def to_dict(self) -> dict:
        return asdict(self)


class Sandwich(nn.Module):
    """One training step's networks in one forward, so DistributedDataParallel sees one forward and one backward."""

    def __init__(self, supernet: Supernet, label_smoothing: float):
        super().__init__()
        self.supernet, self.label_smoothing = supernet, label_smoothing

    def forward(self, x: torch.Tensor, y: torch.Tensor, archs: list[Arch]) -> torch.Tensor:
        teacher, *students = archs
        logits = self._run(teacher, x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        soft = F.softmax(logits.detach(), dim=1)
        for arch in students:
            loss = loss + distill_loss(self._run(arch, x), soft)
        return loss

    def _run(self, arch: Arch, x: torch.Tensor) -> torch.Tensor:
        self.supernet.set_active(arch)
        return self.supernet(resize(x, arch.resolution))


def step_archs(space: SearchSpace, rng: random.Random, n_random: int) -> list[Arch]:
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n_random)]


# ---- distributed ---------------------------------------------------------------------------------
def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


# ---- run directory -------------------------------------------------------------------------------
def run_identity(space: SearchSpace, split: Split, cfg: TrainConfig) -> dict:
    """What a checkpoint's weights depend on; a run with another identity cannot be resumed."""
    return {"space": space.name, "space_hash": space.hash, "data": split.fingerprint,
            "config": {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in HOW_LONG}}



def _retrain(run_dir: Path) -> str:
    return f"delete it and train again (`edgenas train --out {run_dir}` with the run's flags starts from the first epoch)"


def load_run(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    remedy = f"train again into a new --out directory, or delete {run_dir} and train again"
    data = read_json(path, remedy)
    check_schema(data, path, RUN_SCHEMA, RUN_SCHEMA_VERSION, "supernet run", "train again into a new directory")
    missing = [k for k in ("identity", "space") if k not in data]
    if missing:
        raise BadInput(f"{path}: damaged (no field '{missing[0]}'); {remedy}")
    return data


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save, atomically: a job killed while saving keeps its previous checkpoint."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


#: what torch.load raises on a damaged file: a truncated zip archive (RuntimeError), or bytes that the legacy
#: unpickler reads as arbitrary opcodes
_DAMAGED = (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError,
            pickle.UnpicklingError)


def load_checkpoint(path: Path, keys: tuple[str, ...], remedy: str) -> dict:
    """A checkpoint `save_checkpoint` wrote, holding `keys`; a damaged one is a one-line error naming it and `remedy`."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except _DAMAGED as e:  # the first sentence: torch's zip error goes on for three more
        raise BadInput(f"{path}: damaged checkpoint ({type(e).__name__}: {one_line(e).split('. ')[0]}); {remedy}") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise BadInput(f"{path}: damaged checkpoint (no '{missing[0]}'); {remedy}")
    return state


def resume_checkpoint(path: Path, identity: dict, keys: tuple[str, ...], what: str, remedy: str) -> dict | None:
    """The checkpoint of an interrupted `what` (a pruning, a fine-tuning) with the same `identity`, if there is one; one
    with another identity is refused, naming the setting that differs."""
    if not path.exists():
        return None
    state = load_checkpoint(path, ("identity", *keys), remedy)
    if state["identity"] != identity:
        diff = next((k for k in identity if state["identity"].get(k) != identity[k]), "setting")
        raise BadInput(f"{path}: holds a {what} with another {diff}; use a new --out or delete it")
    return state


def check_data_fits(channels: int, classes: int, source: str, space: SearchSpace) -> None:
    """The data's images and classes are what the space's networks take and tell apart (build checks it first)."""
    if channels != space.in_channels:
        raise BadInput(f"--data {source}: images have {channels} channel(s), space '{space.name}' "
                       f"expects {space.in_channels}")
    if classes != space.num_classes:
        raise BadInput(f"--data {source}: {classes} classes, space '{space.name}' has "
                       f"{space.num_classes}; give a space file with num_classes = {classes}")


def _check_data(split: Split, source: str, space: SearchSpace, cfg: TrainConfig, world: int) -> None:
    check_data_fits(split.image_shape[0], len(split.classes), source, space)
    if cfg.batch_size % world:
        raise BadInput(f"--batch-size {cfg.batch_size} must be a multiple of the {world} processes")


def _resume(run_dir: Path, ident: dict, supernet: nn.Module, opt, sched) -> tuple[int, list]:
    """The epoch to start from and the history so far: 0 and [] for a new run, else the checkpoint's, loaded."""
    if not (run_dir / RUN_FILE).exists():
        return 0, []
    run = load_run(run_dir)
    if run["identity"] != ident:
        diff = next(k for k in ident if run["identity"].get(k) != ident[k])
        raise BadInput(f"{run_dir} holds a run with another {diff}; train into a new --out directory")
    if not (run_dir / CHECKPOINT).exists():
        return 0, []
    state = load_checkpoint(run_dir / CHECKPOINT, ("model", "optimizer", "scheduler", "epoch"), _retrain(run_dir))
    supernet.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    return state["epoch"], run.get("history", [])


def _epoch(model: nn.Module, opt, sched, split: Split, n_train: int, space: SearchSpace, cfg: TrainConfig, epoch: int,
           total: int, rank: int, world: int, threads: AdaptivePool | None) -> list[float]:
    """One epoch of sandwich-rule steps over the first `n_train` training images; this process's share of each batch."""
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    order = torch.randperm(n_train, generator=gen).numpy()
    arch_rng = random.Random(cfg.seed * 1000 + epoch)
    train_x, train_y = split.train_x[:n_train], torch.as_tensor(split.train_y[:n_train])
    steps, losses = math.ceil(n_train / cfg.batch_size), []
    with bar(steps, f"train epoch {epoch + 1}/{total}", unit="step") as progress:
        for step in range(steps):
            if threads is not None:
                threads.adapt()
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size][rank::world]
            x = shift_augment(to_input(train_x[idx], split.normalization), cfg.shift, gen)
            x = x.contiguous(memory_format=torch.channels_last)
            loss = model(x, train_y[idx], step_archs(space, arch_rng, cfg.random_subnets))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            progress.update()
    return losses


def train(data_spec: str | None, space: SearchSpace, run_dir: Path, cfg: TrainConfig = TrainConfig(),
          resize: int | None = None) -> TrainResult:
    rank, world = _distributed()
    torch.manual_seed(cfg.seed)
    data = load_dataset(data_spec, resize)
    split = split_data(data, cfg.val_fraction, cfg.seed)
    _check_data(split, data.source, space, cfg, world)
    run_dir = Path(run_dir)
    ident = run_identity(space, split, cfg)
    # channels-last: PyTorch's CPU depthwise convolutions have their fast kernels in this layout
    supernet = Supernet(space).to(memory_format=torch.channels_last)
    opt = optimizer(supernet.parameters(), cfg.lr, cfg.weight_decay)
    n_train = min(cfg.limit or len(split.train_y), len(split.train_y))
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    # epochs per round: `cfg.epochs`, then the rounds `--epochs auto` added (kept in the run record, for a resume)
    rounds = [cfg.epochs, *_more_rounds(run_dir, ident)]
    steps = [r * steps_per_epoch for r in rounds]  # read by the schedule on every step: a round added extends it
    sched = restarting_cosine(opt, steps, min(100, steps_per_epoch))
    start_epoch, history = _resume(run_dir, ident, supernet, opt, sched)

    model: nn.Module = Sandwich(supernet, cfg.label_smoothing)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    evaluator = SubnetEvaluator(supernet, split)
    # one process per machine: several distributed ones would each count the others as load and shrink in turn
    threads = AdaptivePool() if world == 1 else None
    start = time.perf_counter()
    # an absolute path, so that `search` finds the data from any working directory
    spec = (data_spec or DEFAULT_DATA) if is_named(data_spec) else str(Path(data_spec).resolve())
    record = {"schema": RUN_SCHEMA, "schema_version": RUN_SCHEMA_VERSION, "identity": ident, "space": space.to_dict(),
              "data": data_record(split, spec, resize, cfg.val_fraction).to_dict(), "config": cfg.to_dict(),
              "world_size": world, "versions": versions()}
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / RUN_FILE, {**record, "epochs_done": start_epoch, "history": history,
                                               "more_rounds": rounds[1:], "updated": now()})
    epoch = start_epoch
    try:
        while True:
            if epoch >= sum(rounds):
                more = _another_round(cfg, rounds, history, space.num_classes) if world == 1 else 0
                if not more:
                    break
                rounds.append(more)
                add_round(sched, steps, more * steps_per_epoch)
            t0 = time.perf_counter()
            supernet.train()
            losses = _epoch(model, opt, sched, split, n_train, space, cfg, epoch, sum(rounds), rank, world, threads)
            if rank == 0:
                history.append({
                    "epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": sched.get_last_lr()[0],
                    "val_acc_largest": evaluator(space.largest()), "val_acc_smallest": evaluator(space.smallest()),
                    "seconds": round(time.perf_counter() - t0, 2),
                    **({"threads": threads.take_record()} if threads is not None else {}),
                })
                save_checkpoint(run_dir / CHECKPOINT, {"model": supernet.state_dict(), "optimizer": opt.state_dict(),
                                                       "scheduler": sched.state_dict(), "epoch": epoch + 1})
                atomic_write_json(run_dir / RUN_FILE, {**record, "epochs_done": epoch + 1, "history": history,
                                                       "more_rounds": rounds[1:], "updated": now()})
            _barrier(world)
            epoch += 1
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {len(history)} finished epoch(s) are saved in {run_dir}; "
                          f"run the same command to resume") from None
    finally:
        if threads is not None:
            threads.restore()
    return TrainResult(str(run_dir), sum(rounds), start_epoch, world, round(time.perf_counter() - start, 2), history)


def _more_rounds(run_dir: Path, ident: dict) -> list[int]:
    """The rounds `--epochs auto` added to this run before it was stopped (none for a new run or another one)."""
    if not (Path(run_dir) / RUN_FILE).exists():
        return []
    try:
        run = load_run(run_dir)
    except BadInput:
        return []  # `_resume` says what is wrong with it
    return list(run.get("more_rounds", [])) if run.get("identity") == ident else []


def _another_round(cfg: TrainConfig, rounds: list[int], history: list[dict], classes: int) -> int:
    """`--epochs auto`: epochs of one more round (half of `cfg.epochs`) while the supernet's largest network is near
    chance (it cannot rank its networks: `near_chance`), the last round still raised it, and the round fits in what is
    left of `cfg.auto_minutes`; else 0."""
    if cfg.auto_minutes is None or not history:
        return 0
    largest = history[-1]["val_acc_largest"]
    if not near_chance(largest, classes):
        return 0
    last = history[-rounds[-1]:]
    if len(rounds) > 1 and largest - history[-rounds[-1] - 1]["val_acc_largest"] < 0.005:
        say(f"--epochs auto: the largest network stays near chance ({largest:.1%}) after another round: stopping at "
            f"{sum(rounds)} epochs; more images or a smaller space would help more than more epochs")
        return 0
    more = max(1, cfg.epochs // 2)
    spent = sum(h["seconds"] for h in history)
    if spent + more * float(np.mean([h["seconds"] for h in last])) > cfg.auto_minutes * 60:
        say(f"--epochs auto: the largest network is near chance ({largest:.1%}), but another {more} epochs would pass "
            f"{cfg.auto_minutes:g} minutes of training: stopping at {sum(rounds)} epochs")
        return 0
    say(f"--epochs auto: the largest network scores {largest:.1%}, near chance for {classes} classes: training "
        f"{more} more epochs (at most {cfg.auto_minutes:g} minutes in all)")
    return more


def load_supernet(run_dir: Path) -> tuple[Supernet, dict]:
    """The trained supernet of a run directory, and its run record."""
    from edgenas.space.space import space_from_dict

    run_dir = Path(run_dir)
    if run_dir.name == CHECKPOINT:
        run_dir = run_dir.parent
    run = load_run(run_dir)
    if not (run_dir / CHECKPOINT).exists():
        raise BadInput(f"{run_dir}: no {CHECKPOINT}; the run has not finished an epoch")
    space = space_from_dict(run["space"], source=str(run_dir / RUN_FILE))
    supernet = Supernet(space)
    state = load_checkpoint(run_dir / CHECKPOINT, ("model",), _retrain(run_dir))
    try:
        supernet.load_state_dict(state["model"])
    except RuntimeError as e:  # weights of another space than run.json's
        raise BadInput(f"{run_dir / CHECKPOINT}: does not match {RUN_FILE} ({one_line(e)}); {_retrain(run_dir)}") from None
    return supernet.eval(), run
