"""How the training rows are split: test rows, fit and validation rows, and the validation folds
ensemble members hold back (``TrainingRows``), grouped by id and stratified on the label."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from retail_ann.config import TrainConfig
from retail_ann.errors import InputError

MIN_GROUPS = 10          # distinct ids a grouped split needs


@dataclass(frozen=True)
class TrainingRows:
    """The training rows (fit and validation, in row order) of a network, and which of them each
    ensemble member validates on.

    ``fold[i]`` is row i's fold: fold 0 holds the ``validation_split`` rows, the others the fit
    rows. Member m validates on fold ``m % groups`` and fits the rest. With
    ``ensemble_validation: shared`` (or one member) ``groups`` is 1: every member holds back fold 0
    and the fit rows are one fold 1. With ``folds`` the fit rows are cut into folds of fold 0's
    size and ``groups`` is min(members, folds): each member holds back its own fold and fits the
    others, so the merged ensemble has learned from every training row.
    """

    x: np.ndarray
    fold: np.ndarray
    groups: int

    @property
    def fit(self) -> np.ndarray:
        """The rows outside fold 0 (the shared fit rows): the prior and target statistics come
        from them, as the feature spec does."""
        return self.fold != 0

    @property
    def validation(self) -> np.ndarray:
        """Rows some member validates on (out-of-fold predictions exist for them)."""
        return self.fold < self.groups

    @property
    def folds(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(fit, validation)`` row masks of each group of members: validation on fold g, fit on
        the rest (with a shared fold, fold 0 against the fit rows)."""
        return [(self.fold != g, self.fold == g) for g in range(self.groups)]

    @property
    def learned(self) -> np.ndarray:
        """Rows some member fits (with ``folds``, all of them); the baselines fit on the same rows."""
        return np.logical_or.reduce([fit for fit, _ in self.folds])

    def subset(self, mask: np.ndarray) -> "TrainingRows":
        return TrainingRows(self.x[mask], self.fold[mask], self.groups)


@dataclass(frozen=True)
class Split:
    """Row indices (into the table being trained on) of each part, and the training rows' folds."""

    fit: np.ndarray      # rows the networks fit (and the spec is fitted on)
    val: np.ndarray      # rows early stopping and the threshold are decided on
    test: np.ndarray     # rows the metrics are computed on
    train: np.ndarray    # fit and val, sorted: the rows of ``TrainingRows``
    fold: np.ndarray     # ``TrainingRows.fold`` of each training row
    groups: int          # ``TrainingRows.groups``
    how: str             # how the rows were split, for the model card

    def rows(self, x_all: np.ndarray) -> TrainingRows:
        """The training rows of the transformed table ``x_all``."""
        return TrainingRows(x_all[self.train], self.fold, self.groups)


def split_rows(pdf: pd.DataFrame, y, s, cfg: TrainConfig, given_test: np.ndarray | None = None) -> Split:
    """Indices of fit / validation / test rows, and the training rows' folds (``TrainingRows``).
    The test rows are ``given_test`` when the caller has them, else ``cfg.split`` of the rows.
    Stratified on the purchase label (or spend > 0); grouped by id when an id repeats (several
    as_of_dates), so a customer is on one side only (of the fit and validation rows alone when the
    test rows are given: a later cutoff holds the same customers)."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, StratifiedKFold, train_test_split

    n = len(pdf)
    strat = y if y is not None else (s > 0).astype(np.int8)
    idx = np.arange(n)
    ids = pdf[cfg.id_col].astype(str).to_numpy() if cfg.id_col in pdf.columns else None
    n_ids = len(np.unique(ids)) if ids is not None else n
    if n_ids < MIN_GROUPS:
        raise InputError(f"only {n_ids} distinct {cfg.id_col} values in {n} rows: rows of one {cfg.id_col} stay "
                         f"on one side of the split, so it needs at least {MIN_GROUPS} (--id-col names the column)")
    try:
        if given_test is not None:
            train_idx, test_idx, how = idx[~given_test], idx[given_test], "test rows from the test table"
            grouped = ids is not None and len(np.unique(ids[train_idx])) < len(train_idx)
        else:
            grouped = n_ids < n
            if grouped:
                gss = GroupShuffleSplit(n_splits=1, test_size=cfg.split, random_state=cfg.data_seed)
                train_idx, test_idx = next(gss.split(idx, groups=ids))
            else:
                train_idx, test_idx = train_test_split(idx, test_size=cfg.split, stratify=strat,
                                                       random_state=cfg.data_seed)
            how = f"grouped by {cfg.id_col}" if grouped else "stratified"
        if grouped:
            gss_val = GroupShuffleSplit(n_splits=1, test_size=cfg.validation_split, random_state=cfg.data_seed + 1)
            f, v = next(gss_val.split(train_idx, groups=ids[train_idx]))
            fit_idx, val_idx = train_idx[f], train_idx[v]
        else:
            fit_idx, val_idx = train_test_split(train_idx, test_size=cfg.validation_split,
                                                stratify=strat[train_idx], random_state=cfg.data_seed)
    except ValueError as e:
        raise InputError(f"cannot split {n} rows into training, validation and test sets: {e}") from None
    for name, part in (("validation", val_idx), ("test", test_idx), ("fit", fit_idx)):
        if len(np.unique(strat[part])) < 2:
            raise InputError(f"the {name} rows hold only one class; more rows are needed")
    fit_idx, val_idx = np.sort(fit_idx), np.sort(val_idx)
    train_idx = np.sort(np.concatenate([fit_idx, val_idx]))
    fold = np.where(np.isin(train_idx, val_idx), 0, 1)
    groups = 1
    n_folds = max(2, round(1 / cfg.validation_split))
    if cfg.ensemble_validation == "folds" and cfg.ensemble > 1:
        on_fit = fold == 1
        if n_folds > 2:   # else the fit rows are the one other fold
            cut = (StratifiedGroupKFold(n_folds - 1, shuffle=True, random_state=cfg.data_seed) if grouped
                   else StratifiedKFold(n_folds - 1, shuffle=True, random_state=cfg.data_seed))
            fit_fold = np.empty(int(on_fit.sum()), dtype=int)
            try:
                for f, (_, part) in enumerate(cut.split(train_idx[on_fit], strat[train_idx[on_fit]],
                                                        ids[train_idx[on_fit]] if grouped else None)):
                    fit_fold[part] = f + 1
            except ValueError as e:
                raise InputError(f"cannot cut the fit rows into {n_folds - 1} validation folds: {e}") from None
            fold[on_fit] = fit_fold
        groups = min(cfg.ensemble, n_folds)
        for f in range(1, groups):
            if len(np.unique(strat[train_idx[fold == f]])) < 2:
                raise InputError(f"validation fold {f} holds only one class; more rows are needed "
                                 "(or ensemble_validation: shared)")
        how += f"; members hold back {groups} of {n_folds} folds"
    return Split(fit=fit_idx, val=val_idx, test=np.sort(test_idx), train=train_idx, fold=fold, groups=groups, how=how)
