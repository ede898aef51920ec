"""Evaluation splits: leave-one-out (the sequential-recommendation standard) and global temporal.

An :class:`EvalSet` is a list of (history, target) cases; histories are catalogue indices, oldest
first. A :class:`Split` holds the training sequences and the validation and test EvalSets.

Leave-one-out, per user with at least 3 items: train = seq[:-2], valid = (seq[:-2] -> seq[-2]),
test = (seq[:-1] -> seq[-1]). Users with fewer than 3 items only train. ``Split.train`` is what a
model fits before validation (early stopping, model selection); ``Split.train_full`` adds the
validation items (seq[:-1]) and is what a model may fit for the final test: the Markov baseline
reference numbers (Office 2014 R@10 0.1011, Beauty 2014 0.0849) are fitted on ``train_full``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lumenrec.data.types import Interactions

__all__ = ["EvalSet", "Split", "leave_one_out", "temporal_split"]


@dataclass
class EvalSet:
    """Cases to rank: `histories[i]` (item indices, oldest first) -> `targets[i]`."""

    users: list[str] = field(default_factory=list)
    histories: list[np.ndarray] = field(default_factory=list)
    targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.histories)

    def subset(self, idx: np.ndarray | list[int]) -> "EvalSet":
        idx = list(idx)
        return EvalSet([self.users[i] for i in idx], [self.histories[i] for i in idx], self.targets[idx])


@dataclass
class Split:
    """Training sequences plus validation and test cases over a catalogue of `num_items` items."""

    num_items: int
    train: list[np.ndarray]
    valid: EvalSet
    test: EvalSet
    train_users: list[str] = field(default_factory=list)
    kind: str = "leave_one_out"
    train_full: list[np.ndarray] = field(default_factory=list)

    def train_popularity(self) -> np.ndarray:
        counts = np.zeros(self.num_items, dtype=np.int64)
        for s in self.train:
            np.add.at(counts, s, 1)
        return counts


def leave_one_out(interactions: Interactions, min_len: int = 3) -> Split:
    """The standard leave-one-out split (see the module docstring)."""
    if min_len < 3:
        raise ValueError(f"min_len must be >= 3 (train, valid and test need one item each), got {min_len}")
    train, users, full = [], [], []
    valid, test = EvalSet(), EvalSet()
    vt, tt = [], []
    for s in interactions:
        seq = np.asarray(s.items, dtype=np.int64)
        if len(seq) < min_len:
            train.append(seq)
            full.append(seq)
            users.append(s.user_id)
            continue
        train.append(seq[:-2])
        full.append(seq[:-1])
        users.append(s.user_id)
        valid.users.append(s.user_id)
        valid.histories.append(seq[:-2])
        vt.append(seq[-2])
        test.users.append(s.user_id)
        test.histories.append(seq[:-1])
        tt.append(seq[-1])
    valid.targets = np.asarray(vt, dtype=np.int64)
    test.targets = np.asarray(tt, dtype=np.int64)
    return Split(interactions.num_items, train, valid, test, users, "leave_one_out", full)


def temporal_split(interactions: Interactions, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """A global temporal split: two time cut-offs chosen so that about `valid_frac` and `test_frac`
    of all interactions fall after them. Training = every interaction before the first cut-off.
    A user contributes one validation case (their first interaction in the validation window,
    history = all before it) and one test case (first interaction in the test window, history =
    all before it, validation-window items included)."""
    if not interactions.has_timestamps:
        raise ValueError("temporal_split needs timestamps on every sequence; use leave_one_out instead")
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise ValueError(f"valid_frac={valid_frac}, test_frac={test_frac}: each in (0,1), sum < 1")
    all_ts = np.concatenate([np.asarray(s.timestamps) for s in interactions])
    t_test = np.quantile(all_ts, 1 - test_frac)
    t_valid = np.quantile(all_ts, 1 - test_frac - valid_frac)
    train, users, full = [], [], []
    valid, test = EvalSet(), EvalSet()
    vt, tt = [], []
    for s in interactions:
        seq = np.asarray(s.items, dtype=np.int64)
        ts = np.asarray(s.timestamps)
        full.append(seq[ts < t_test])
        n_train = int(np.searchsorted(ts, t_valid, side="left")) if np.all(np.diff(ts) >= 0) else int((ts < t_valid).sum())
        train.append(seq[:n_train])
        users.append(s.user_id)
        iv = np.nonzero((ts >= t_valid) & (ts < t_test))[0]
        if len(iv) and iv[0] > 0:
            valid.users.append(s.user_id)
            valid.histories.append(seq[: iv[0]])
            vt.append(seq[iv[0]])
        it = np.nonzero(ts >= t_test)[0]
        if len(it) and it[0] > 0:
            test.users.append(s.user_id)
            test.histories.append(seq[: it[0]])
            tt.append(seq[it[0]])
    valid.targets = np.asarray(vt, dtype=np.int64)
    test.targets = np.asarray(tt, dtype=np.int64)
    return Split(interactions.num_items, train, valid, test, users, "temporal", full)
