"""Training loop of the sequential retriever (SASRec): full-ranking validation, early stopping,
a wall-clock budget, atomic resumable checkpoints, and CPU data-parallel training (DDP over gloo).

Every position of every training sequence predicts its next item: a batch of users gives (B, L)
inputs ``seq[:-1]`` and targets ``seq[1:]``; the M valid (non-padding) positions are flattened into
(M, d) queries and (M,) positives for the ranking loss.

Data parallel: run under ``torchrun --nproc_per_node K -m lumenrec.retriever.train ...`` (or
``lumenrec train --ddp K``). Each global batch of `batch_size` users (same shuffled order on every
rank) is split DistributedSampler-style (rank r takes users r, r+K, ...). Each rank weights its mean
loss by ``M_rank / M_global`` and gradients are SUM-reduced, so one step equals the single-process
step on the whole global batch (up to float summation order). Rank 0 evaluates, decides when to
stop, and writes checkpoints; the decision is broadcast so all ranks leave the loop together.

Refit (``TrainConfig.refit_full``, on by default): ``split.train`` (seq[:-2]) never contains the
transition into a user's validation item, yet for the test (seq[:-1] -> seq[-1]) that transition is
the most recent one, and it matters (the Markov baseline loses ~16% R@10 on Office without it). So
after model selection on the validation set, the best weights train ``refit_epochs`` more epochs on
``split.train_full`` (seq[:-1]; validation targets included, test targets never) and those weights
are the final model. Validation metrics after a refit would be contaminated, so the reported
``best_valid`` is the pre-refit one; ``test_before_refit`` is kept for comparison. With a time
budget, model selection stops early enough to leave time for the refit epochs.
"""

from __future__ import annotations

import logging
import math
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm.auto import tqdm

from lumenrec.data.split import EvalSet, Split
from lumenrec.errors import CheckpointError, ConfigError
from lumenrec.retriever.configs import ESTIMATORS, LOSSES, TrainConfig  # noqa: F401  (re-exported)
from lumenrec.retriever.sasrec import SASRec, SASRecConfig, SASRecRetriever, pad_histories, score_histories

__all__ = ["TrainConfig", "TrainResult", "Trainer", "evaluate_model", "main"]

log = logging.getLogger(__name__)



@dataclass
class TrainResult:
    """What a training run reports. Metrics dicts are those of :func:`lumenrec.eval.protocol.evaluate`."""

    best_valid: dict[str, float]
    test: dict[str, float]
    best_epoch: int  # 1-based epoch of the best validation metric (0: never evaluated)
    epochs: int  # epochs completed (counting those of a resumed run)
    steps: int  # optimizer steps (counting those of a resumed run)
    stopped: str  # why training ended: epochs | early_stop | max_time | max_steps
    wall_time_s: float  # this run, training + evaluation
    train_time_s: float  # this run, optimizer steps only
    steps_per_s: float
    sequences_per_s: float  # training sequences per second of train_time_s (global, all ranks)
    peak_rss_mb: float  # peak resident memory of this process
    world_size: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per evaluation
    checkpoint_dir: str | None = None
    refit_epochs: int = 0  # epochs trained on split.train_full after selection (0: no refit)
    test_before_refit: dict[str, float] = field(default_factory=dict)  # test of the selected weights, pre-refit

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def evaluate_model(model: SASRec, cases: EvalSet, *, batch_size: int = 512) -> dict[str, float]:
    """Full-catalogue metrics of `model` on `cases` (history items masked), via the eval protocol."""
    from lumenrec.eval.protocol import evaluate

    was_training = model.training
    model.eval()
    try:
        return evaluate(lambda histories: score_histories(model, histories), cases, batch_size=batch_size)
    finally:
        model.train(was_training)


class Trainer:
    """Train a :class:`SASRec` on ``split.train`` (see the module docstring).

    `loss_fn` overrides the loss named in the config (any module with the ranking-loss signature
    ``(query (M, d), positives (M,), item_emb (N, d)) -> scalar``). `resume_from` continues a run
    from a checkpoint directory: model config, weights, optimizer, RNG, epoch and best metric come
    from it; `config` (e.g. a larger `epochs`) still governs the rest of the run.
    """

    def __init__(self, split: Split, model_config: SASRecConfig | None = None, config: TrainConfig | None = None, *,
                 item_ids: Sequence[str] | None = None, dataset_name: str = "", loss_fn: nn.Module | None = None,
                 resume_from: str | Path | None = None) -> None:
        self.split = split
        self.config = config or TrainConfig()
        self.dataset_name = dataset_name
        self.rank, self.world_size = _world()
        self.item_ids = [str(i) for i in item_ids] if item_ids is not None else [str(i) for i in range(split.num_items)]
        if len(self.item_ids) != split.num_items:
            raise ValueError(f"{len(self.item_ids)} item ids for a split over {split.num_items} items")
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)

        resume_tensors, resume_info = None, None
        if resume_from is not None:
            from lumenrec.retriever.checkpoint import load_model, load_resume_state

            best_model, ckpt_ids, _ = load_model(resume_from)
            resume_tensors, resume_info = load_resume_state(resume_from)
            if ckpt_ids != self.item_ids:
                raise CheckpointError(f"{resume_from}: item ids differ from this run's catalogue; cannot resume")
            if model_config is not None and model_config != best_model.config:
                log.warning("resume: using the checkpoint's model config %s instead of the given one", best_model.config)
            model_config = best_model.config
        if model_config is None:
            model_config = SASRecConfig(num_items=split.num_items)
        if model_config.num_items != split.num_items:
            raise ConfigError("num_items", model_config.num_items, f"split has {split.num_items} items")
        self.model_config = model_config

        torch.manual_seed(self.config.seed)  # same init on every rank
        self.model = SASRec(model_config)
        if self.world_size > 1:  # belt and braces: make sure all ranks start from rank 0's weights
            for t in self.model.state_dict().values():
                dist.broadcast(t, 0)
        torch.manual_seed(self.config.seed * 1000 + 1 + self.rank)  # dropout / negatives: distinct per rank
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay, betas=(0.9, 0.98))
        self.loss_fn = loss_fn if loss_fn is not None else self._make_loss()

        # training examples: sequences with >= 2 items, cut to their last max_len + 1 items
        self.train_seqs = self._examples(split.train)
        if not self.train_seqs:
            raise ValueError("no training sequence has 2 or more items: nothing to learn from")

        # progress state (overwritten by a resume)
        self.epoch = 0  # index of the epoch in progress (0-based)
        self.batch_in_epoch = 0  # batches of that epoch already done
        self.step = 0
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.best_valid: dict[str, float] = {}
        self.bad_evals = 0
        self.history: list[dict[str, Any]] = []
        self.best_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.last_state: dict[str, Tensor] = {}  # weights where the last fit() stopped (self.model holds the best)
        if resume_tensors is not None:
            self._restore(resume_tensors, resume_info, best_model)

    # -- setup -----------------------------------------------------------------------------------

    def _examples(self, seqs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Training examples: sequences with >= 2 items, cut to their last max_len + 1 items."""
        L = self.model_config.max_len
        return [np.asarray(s, dtype=np.int64)[-(L + 1):] for s in seqs if len(s) >= 2]

    def _make_loss(self) -> nn.Module:
        from lumenrec.retriever.losses import make_loss  # lazy: the losses live in their own module

        return make_loss(self.config.loss, self.split.num_items, num_negatives=self.config.num_negatives,
                         estimator=self.config.estimator, item_popularity=self.split.train_popularity())

    def _restore(self, tensors: dict[str, Tensor], info: dict[str, Any], best_model: SASRec) -> None:
        from lumenrec.retriever.checkpoint import optimizer_from_flat

        try:
            self.model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
            self.optimizer.load_state_dict(optimizer_from_flat(tensors, info["optimizer"]))
            self.epoch, self.batch_in_epoch, self.step = int(info["epoch"]), int(info["batch_in_epoch"]), int(info["step"])
            self.best_metric = float(info["best_metric"])
            self.best_epoch, self.bad_evals = int(info["best_epoch"]), int(info["bad_evals"])
            self.best_valid, self.history = dict(info.get("best_valid", {})), list(info.get("history", []))
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"resume state does not fit this model/optimizer: {e}") from e
        self.best_state = {k: v.clone() for k, v in best_model.state_dict().items()}
        if any(k.startswith("best.") for k in tensors):  # a refit checkpoint: model.safetensors holds the refit
            self.best_state = {k[len("best."):]: v.clone() for k, v in tensors.items() if k.startswith("best.")}
        if "rng.torch" in tensors and self.world_size == 1:
            torch.set_rng_state(tensors["rng.torch"])
        else:
            torch.manual_seed(self.config.seed * 1000 + 1 + self.rank + 7919 * self.step)
        log.info("resumed at epoch %d (batch %d), step %d, best %s=%.4f", self.epoch + 1, self.batch_in_epoch,
                 self.step, self.config.metric, self.best_metric)

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The global batches (user indices) of `epoch`: a deterministic function of (seed, epoch).

        With length bucketing: shuffle, cut into pools of 50 batches, sort each pool by length, cut
        it into batches, shuffle the batch order. Batches stay random in content and order but
        similar in length, so little compute goes to padding.
        """
        bs, n = self.config.batch_size, len(self.train_seqs)
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(n)
        if not self.config.length_bucketing:
            return [order[s : s + bs] for s in range(0, n, bs)]
        lengths = np.array([len(s) for s in self.train_seqs])
        batches = []
        pool = 50 * bs
        for p in range(0, n, pool):
            chunk = order[p : p + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches += [chunk[s : s + bs] for s in range(0, len(chunk), bs)]
        return [batches[i] for i in rng.permutation(len(batches))]

    # -- one step --------------------------------------------------------------------------------

    def _batch(self, idx: np.ndarray) -> tuple[Tensor, Tensor]:
        """Users `idx` -> (inputs (B, L), targets (B, L)) model indices, left-padded."""
        seqs = [self.train_seqs[i] for i in idx]
        L = self.model_config.max_len
        return pad_histories([s[:-1] for s in seqs], L), pad_histories([s[1:] for s in seqs], L)

    def _step(self, idx_local: np.ndarray) -> tuple[float, int]:
        """One optimizer step on this rank's share of a global batch. Returns (global mean loss, global M)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=False)
        m_local = 0
        loss_local = torch.zeros(())
        if len(idx_local):
            inputs, targets = self._batch(idx_local)  # (B, L), (B, L)
            valid = targets != 0  # (B, L)
            m_local = int(valid.sum())
        m_global = m_local
        if self.world_size > 1:
            t = torch.tensor([float(m_local)])
            dist.all_reduce(t)
            m_global = int(t.item())
        if m_local:
            hidden = self.model(inputs)  # (B, L, d)
            query = hidden[valid]  # (M, d)
            positives = targets[valid] - 1  # (M,) catalogue indices
            loss_local = self.loss_fn(query, positives, self.model.item_embeddings())  # scalar mean over M_local
            (loss_local * (m_local / m_global)).backward()
        weighted = float(loss_local.detach()) * (m_local / max(m_global, 1))
        if self.world_size > 1:
            self._all_reduce_grads()
            t = torch.tensor([weighted])
            dist.all_reduce(t)
            weighted = float(t.item())
        if self.config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.step += 1
        return weighted, m_global

    def _all_reduce_grads(self) -> None:
        params = [p for p in self.model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])  # one collective instead of one per tensor
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))
            offset += n

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision, on every rank."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([1 if flag else 0])
        dist.broadcast(t, 0)
        return bool(t.item())

    # -- evaluation and checkpoints ----------------------------------------------------------------

    def _evaluate_valid(self, loss: float, epoch: int) -> bool:
        """Rank 0: evaluate at (1-based) `epoch`, track the best weights. Returns True when patience ran out."""
        metrics = evaluate_model(self.model, self.split.valid, batch_size=self.config.eval_batch_size)
        value = metrics[self.config.metric]
        entry = {"epoch": epoch, "step": self.step, "loss": loss, self.config.metric: value,
                 "recall@10": metrics.get("recall@10")}
        self.history.append(entry)
        if value > self.best_metric:
            self.best_metric, self.best_epoch, self.best_valid, self.bad_evals = value, epoch, metrics, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad_evals += 1
        log.info("epoch %d step %d loss %.4f valid %s %.4f (best %.4f @ epoch %d)", epoch, self.step, loss,
                 self.config.metric, value, self.best_metric, self.best_epoch)
        return self.bad_evals >= self.config.patience

    def save(self, directory: str | Path | None = None, test_metrics: dict[str, float] | None = None, *,
             final_state: dict[str, Tensor] | None = None, optimizer_state: dict[str, Any] | None = None,
             refit: dict[str, Any] | None = None) -> Path | None:
        """Write the checkpoint (best weights + resume state) to `directory` or the config's checkpoint_dir.

        After a refit, `final_state` (the refit weights) becomes model.safetensors, the selected
        pre-refit weights go to the resume tensors as "best.*", `optimizer_state` is the optimizer
        where selection stopped, and `refit` is recorded in config.json and metrics.json."""
        from lumenrec import __version__
        from lumenrec.retriever.checkpoint import optimizer_to_flat, save_checkpoint

        directory = directory or self.config.checkpoint_dir
        if directory is None or self.rank != 0:
            return None
        opt_tensors, opt_info = optimizer_to_flat(optimizer_state or self.optimizer.state_dict())
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        if final_state is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_state.items()})
        info = {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "best_metric": self.best_metric if math.isfinite(self.best_metric) else -1e30,
                "best_epoch": self.best_epoch, "bad_evals": self.bad_evals, "best_valid": self.best_valid,
                "history": self.history, "optimizer": opt_info}
        metrics = {"valid": self.best_valid, "best_epoch": self.best_epoch, "metric": self.config.metric}
        if test_metrics is not None:
            metrics["test"] = test_metrics
        if refit is not None:
            metrics["refit"] = refit
        config = {"model": self.model_config.to_dict(), "train": asdict(self.config), "dataset": self.dataset_name,
                  "lumenrec_version": __version__, "world_size": self.world_size, "architecture": "sasrec",
                  "refit": refit}
        weights = final_state if final_state is not None else self.best_state
        return save_checkpoint(directory, model_state=weights, config=config, item_ids=self.item_ids,
                               metrics=metrics, resume_tensors=tensors, resume_info=info)

    # -- the loop --------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train until a budget runs out or validation stops improving; return metrics (test on best weights)."""
        cfg = self.config
        t0 = time.monotonic()
        train_time, seqs_seen, steps_this_run = 0.0, 0, 0
        stopped = "epochs"
        evaluated_at = self.step if self.history else -1
        last_loss = float("nan")
        show = cfg.progress and self.rank == 0
        refit_epochs = cfg.refit_epochs if cfg.refit_full else 0
        full_seqs = self._examples(self.split.train_full) if refit_epochs else []
        # seconds per refit epoch ~ seconds per training epoch x (refit positions / training positions)
        pos_ratio = sum(len(x) - 1 for x in full_seqs) / max(sum(len(x) - 1 for x in self.train_seqs), 1)
        reserve = 0.0  # seconds kept for the refit (its epochs + 2 test evaluations), known after the first epoch
        epoch_s = 0.0
        while self.epoch < cfg.epochs:
            epoch_t0 = time.monotonic()
            batches = self._epoch_batches(self.epoch)  # same batches on every rank
            steps_per_epoch = len(batches)
            bar = tqdm(total=steps_per_epoch, initial=self.batch_in_epoch, desc=f"epoch {self.epoch + 1}",
                       disable=not show, unit="step", leave=False)
            loss_sum, loss_n = 0.0, 0
            stop = False
            while self.batch_in_epoch < steps_per_epoch:
                batch = batches[self.batch_in_epoch]
                ts = time.monotonic()
                loss, _ = self._step(batch[self.rank :: self.world_size])
                train_time += time.monotonic() - ts
                self.batch_in_epoch += 1
                steps_this_run += 1
                seqs_seen += len(batch)
                loss_sum, loss_n = loss_sum + loss, loss_n + 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}", seq_s=f"{seqs_seen / max(train_time, 1e-9):.0f}")
                if cfg.max_steps is not None and self.step >= cfg.max_steps:
                    stopped, stop = "max_steps", True
                    break
                over = cfg.max_time_s is not None and time.monotonic() - t0 > cfg.max_time_s - reserve
                if self._agree(over):
                    stopped, stop = "max_time", True
                    break
            bar.close()
            last_loss = loss_sum / max(loss_n, 1)
            if self.batch_in_epoch >= steps_per_epoch:  # epoch finished (possibly on its last allowed step)
                self.epoch += 1
                self.batch_in_epoch = 0
                epoch_s = epoch_s or time.monotonic() - epoch_t0
            if stop:
                break
            if self.epoch % cfg.eval_every == 0:
                patience_out = False
                if self.rank == 0:
                    te = time.monotonic()
                    patience_out = self._evaluate_valid(last_loss, self.epoch)  # self.epoch = epochs done
                    if refit_epochs and not reserve and epoch_s:
                        reserve = refit_epochs * pos_ratio * epoch_s * 1.1 + 2 * (time.monotonic() - te)
                    self.save()
                evaluated_at = self.step
                if self._agree(patience_out):
                    stopped = "early_stop"
                    break
        if self.rank == 0 and evaluated_at != self.step and steps_this_run:
            self._evaluate_valid(last_loss, self.epoch + (self.batch_in_epoch > 0))  # budget ended between evaluations: consider the latest weights
        test: dict[str, float] = {}
        test_before: dict[str, float] = {}
        refit_info: dict[str, Any] | None = None
        self.last_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}  # where training stopped
        has_test = len(self.split.test) > 0
        if refit_epochs and steps_this_run and full_seqs:
            import copy

            opt_state = copy.deepcopy(self.optimizer.state_dict())  # where selection stopped, for the resume state
            self.model.load_state_dict(self.best_state)
            if self.world_size > 1:  # only rank 0 tracked the best weights
                for t in self.model.state_dict().values():
                    dist.broadcast(t, 0)
            if self.rank == 0 and has_test:
                test_before = evaluate_model(self.model, self.split.test, batch_size=cfg.eval_batch_size)
            rt0 = time.monotonic()
            refit_loss = self._refit(full_seqs, refit_epochs, show)
            refit_info = {"epochs": refit_epochs, "data": "split.train_full (seq[:-1]): validation items included",
                          "from_epoch": self.best_epoch, "loss": refit_loss, "seconds": time.monotonic() - rt0,
                          "test_before_refit": test_before}
            final_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.rank == 0:
                test = evaluate_model(self.model, self.split.test, batch_size=cfg.eval_batch_size) if has_test else {}
                if cfg.checkpoint_dir:
                    self.model.load_state_dict(self.last_state)  # resume state = where selection stopped
                    self.save(test_metrics=test, final_state=final_state, optimizer_state=opt_state, refit=refit_info)
                    self.model.load_state_dict(final_state)
            self.optimizer.load_state_dict(opt_state)  # a resumed run continues selection, not the refit
        elif self.rank == 0:
            self.model.load_state_dict(self.best_state)
            test = evaluate_model(self.model, self.split.test, batch_size=cfg.eval_batch_size) if has_test else {}
            if cfg.checkpoint_dir:
                self.model.load_state_dict(self.last_state)  # resume state = where training stopped
                self.save(test_metrics=test)
                self.model.load_state_dict(self.best_state)
        if self.world_size > 1:
            dist.barrier()  # ranks > 0 return empty metrics; rank 0 holds the result
        wall = time.monotonic() - t0
        return TrainResult(
            best_valid=self.best_valid, test=test, best_epoch=self.best_epoch, epochs=self.epoch, steps=self.step,
            stopped=stopped, wall_time_s=wall, train_time_s=train_time,
            steps_per_s=steps_this_run / max(train_time, 1e-9), sequences_per_s=seqs_seen / max(train_time, 1e-9),
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, world_size=self.world_size,
            history=list(self.history), checkpoint_dir=str(cfg.checkpoint_dir) if cfg.checkpoint_dir else None,
            refit_epochs=refit_epochs if refit_info else 0, test_before_refit=test_before,
        )

    def _refit(self, full_seqs: list[np.ndarray], epochs: int, show: bool) -> float:
        """Train the current (selected) weights `epochs` epochs on `full_seqs`; returns the last epoch's mean loss.

        Batches come from a seed stream of their own, so a refit does not disturb a later resume.
        """
        selection_seqs, self.train_seqs = self.train_seqs, full_seqs
        rng = torch.get_rng_state()  # restored afterwards: the saved resume state is selection's
        loss_sum, loss_n = 0.0, 0
        try:
            for e in range(epochs):
                loss_sum, loss_n = 0.0, 0
                batches = self._epoch_batches(10_000_000 + e)  # (seed, epoch) stream disjoint from selection's
                for batch in tqdm(batches, desc=f"refit {e + 1}/{epochs}", disable=not show, unit="step", leave=False):
                    loss, _ = self._step(batch[self.rank :: self.world_size])
                    self.step -= 1  # refit steps are not selection steps (resume counts those)
                    loss_sum, loss_n = loss_sum + loss, loss_n + 1
                log.info("refit epoch %d/%d on train_full: loss %.4f", e + 1, epochs, loss_sum / max(loss_n, 1))
        finally:
            self.train_seqs = selection_seqs
            torch.set_rng_state(rng)
        return loss_sum / max(loss_n, 1)

    def retriever(self, catalog) -> SASRecRetriever:
        """The trained model as a retriever over `catalog`: after :meth:`fit`, the refit weights when
        the config refits (``refit_full`` and ``refit_epochs`` > 0), else the best validated weights."""
        return SASRecRetriever(self.model, catalog)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m lumenrec.retriever.train`` (also under torchrun): same options as
    ``lumenrec train``. Under torchrun (WORLD_SIZE > 1) it joins a gloo process group."""
    import os

    from lumenrec.retriever.commands import build_train_parser, run_train

    args = build_train_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")
    try:
        return run_train(args)
    finally:
        if distributed:
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
