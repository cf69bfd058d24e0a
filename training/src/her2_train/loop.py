"""The tile-classifier training loop: seeded, resumable, early-stopped on validation macro-F1.

All randomness of a run (sampling, augmentation, dropout) comes from a seeded
``torch.Generator`` and torch's global generator, whose states are saved with the model,
optimiser and scheduler in the ``last`` state file after every epoch: resuming from it gives
the same weights as a run that was never interrupted. Batches for the next step are prepared
(sampled, augmented, normalised) in a background thread while the model trains on the
current one.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn
from tqdm.auto import tqdm

from .augment import AugmentParams, augment
from .config import Recipe
from .errors import TrainError
from .state import load_state, save_state
from .threads import torch_threads

log = logging.getLogger(__name__)

EVAL_BATCH = 256


@dataclass
class FitResult:
    """A trained model (best validation epoch when early stopping ran) and its history."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False


def channel_stats(tiles: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, H, W, 3) tiles scaled to [0, 1]."""
    x = tiles.reshape(-1, 3).astype(np.float64) / 255.0
    return tuple(x.mean(0).round(4).tolist()), tuple(np.maximum(x.std(0), 1e-3).round(4).tolist())


def to_float(tiles: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2).float().div_(255.0)


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).reshape(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).reshape(1, -1, 1, 1)
    return (x - m) / s


def sample_order(labels: np.ndarray, n: int, balanced: bool,
                 gen: torch.Generator) -> torch.Tensor:
    """n tile indices for one epoch: class-balanced draws with replacement, or a shuffle."""
    y = torch.from_numpy(labels)
    if balanced:
        counts = torch.bincount(y, minlength=int(y.max()) + 1).double()
        weights = 1.0 / counts[y]
        return torch.multinomial(weights, n, replacement=True, generator=gen)
    order = torch.randperm(len(y), generator=gen)
    return order.repeat(math.ceil(n / len(y)))[:n]


def _batches(tiles: np.ndarray, labels: np.ndarray, steps: int, batch: int, recipe: Recipe,
             aug: AugmentParams, stats: tuple, gen: torch.Generator) -> Iterator[tuple]:
    order = sample_order(labels, steps * batch, recipe.balanced, gen)
    for s in range(steps):
        idx = order[s * batch:(s + 1) * batch].numpy()
        x = augment(to_float(tiles[idx]), aug, gen)
        yield normalise(x, *stats), torch.from_numpy(labels[idx])


def prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run an iterator in a background thread, ``depth`` items ahead (order kept)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def work() -> None:
        try:
            for item in it:
                q.put(item)
        except BaseException as err:  # noqa: BLE001  (re-raised in the consumer)
            q.put(err)
        q.put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    params = model.parameters()
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                               weight_decay=recipe.weight_decay)
    cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, steps: int,
                   epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up, then cosine decay to 0 (or constant)."""
    warm = recipe.warmup_epochs * steps
    total = max(1, epochs * steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if recipe.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@torch.no_grad()
def predict_logits(model: nn.Module, tiles: np.ndarray, stats: tuple,
                   device: torch.device) -> torch.Tensor:
    """Logits of uint8 tiles in eval mode (no augmentation)."""
    was = model.training
    model.eval()
    out = [model(normalise(to_float(tiles[i:i + EVAL_BATCH]), *stats).to(device)).float().cpu()
           for i in range(0, len(tiles), EVAL_BATCH)]
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over the classes present in y_true or y_pred."""
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def _step(model, opt, sched, scaler, x, y, recipe, device) -> float:
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.float16, enabled=scaler is not None):
        loss = F.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    else:
        loss.backward()
        opt.step()
    sched.step()
    return float(loss.detach())


class _Run:
    """Mutable state of one fit: what the ``last`` file stores."""

    def __init__(self, model, opt, sched, gen, key: str = "") -> None:
        self.model, self.opt, self.sched, self.gen = model, opt, sched, gen
        self.key = key
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, torch.Tensor] | None = None
        self.best_score = -1.0
        self.best_epoch = -1
        self.bad = 0
        self.done = False

    def snapshot(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "gen": self.gen.get_state(),
                "rng": torch.get_rng_state(), "epoch": self.epoch, "history": self.history,
                "best": self.best, "best_score": self.best_score,
                "best_epoch": self.best_epoch, "bad": self.bad, "done": self.done,
                "key": self.key}

    def restore(self, s: dict[str, Any]) -> None:
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        self.gen.set_state(s["gen"])
        torch.set_rng_state(s["rng"])
        for key in ("epoch", "history", "best", "best_score", "best_epoch", "bad", "done"):
            setattr(self, key, s[key])


def fit(model: nn.Module, train: tuple[np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray] | None, *, recipe: Recipe, aug: AugmentParams,
        epochs: int, stats: tuple, seed: int = 0, device: str | torch.device = "cpu",
        state_path: Path | None = None, stop_after: int | None = None,
        progress: bool = True, desc: str = "train", threads: int | None = None,
        state_key: str = "") -> FitResult:
    """Train ``model`` on uint8 tiles and labels; early stopping on ``val`` macro-F1.

    state_path: the ``last`` state file (resumed from when it exists, written each epoch).
    stop_after: stop after this many epochs of this call (an interruption, for tests).
    threads: torch CPU threads (default: all cores but one, which prepares batches).
    state_key: identifies the configuration and data; a state file written under another
        key is refused rather than resumed.
    """
    tiles, labels = train
    if len(tiles) == 0:
        raise TrainError("no training tiles")
    device = torch.device(device)
    model.to(device).train()
    batch = min(recipe.batch_size, len(tiles))
    steps = max(1, len(tiles) // batch)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = make_optimizer(model, recipe)
    run = _Run(model, opt, make_scheduler(opt, recipe, steps, epochs), gen, state_key)
    if state_path is not None and state_path.is_file():
        saved = load_state(state_path)
        if saved.get("key", "") != state_key:
            raise TrainError(f"{state_path}: written by another configuration or data set; "
                             "use a new --out folder (or delete states/) to start afresh")
        run.restore(saved)
        log.info("resumed %s at epoch %d", state_path, run.epoch)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    bar = tqdm(total=epochs, initial=run.epoch, desc=desc, disable=not progress, leave=False)
    ran = 0
    while not run.done and run.epoch < epochs and (stop_after is None or ran < stop_after):
        with torch_threads(threads):
            losses = [_step(model, opt, run.sched, scaler, x, y, recipe, device) for x, y in
                      prefetch(_batches(tiles, labels, steps, batch, recipe, aug, stats, gen))]
        row = {"epoch": run.epoch + 1, "loss": float(np.mean(losses)),
               "lr": float(opt.param_groups[0]["lr"])}
        if val is not None and len(val[0]):
            with torch_threads(threads):
                pred = predict_logits(model, val[0], stats, device).argmax(1).numpy()
            row["val_macro_f1"] = macro_f1(val[1], pred)
            row["val_accuracy"] = float((pred == val[1]).mean())
            _early_stopping(run, row["val_macro_f1"], recipe)
        run.history.append(row)
        run.epoch += 1
        ran += 1
        run.done = run.done or run.epoch >= epochs
        bar.update(1)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if state_path is not None:
            save_state(state_path, run.snapshot())
    bar.close()
    if run.best is not None and recipe.early_stopping:
        model.load_state_dict(run.best)
    stopped = run.done and run.epoch < epochs
    return FitResult(model.eval(), run.history, run.best_epoch, stopped)


def _early_stopping(run: _Run, score: float, recipe: Recipe) -> None:
    if score > run.best_score:
        run.best_score, run.best_epoch, run.bad = score, run.epoch + 1, 0
        run.best = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
        return
    run.bad += 1
    if recipe.early_stopping and run.bad >= recipe.patience:
        run.done = True
