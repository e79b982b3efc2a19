"""scikit-learn models, hyper-parameter grids and the selection pipeline of the STEM experiment.

Every (feature set, model) cell is one ``Pipeline(scale -> RFECV -> model)`` searched with ``GridSearchCV``
(dkt_spec.md §6.4). Grids come in three presets:

* ``paper``: the grids of the authors' ``main_experiment.ipynb`` (dkt_spec.md §6.4), verbatim;
* ``fast``:  the default, a subset of ``paper`` sized so that the whole ``launch.stem`` run on the full
  synthetic data fits in 15 minutes on 2 CPU cores (see docs/stem.md);
* ``tiny``:  one or two points per model, for the test suite.

Logistic-regression ``penalty`` is expressed as ``l1_ratio`` (``penalty='l1'`` == ``l1_ratio=1``) because
scikit-learn >= 1.8 deprecates ``penalty``.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.feature_selection import RFECV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

MODEL_NAMES = ("lr", "svm", "gbdt", "mlp", "lda", "qda")
GRID_PRESETS = ("paper", "fast", "tiny")
_C_GRID = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]


def make_model(name: str, seed: int) -> BaseEstimator:
    """An unfitted classifier ``name`` (one of MODEL_NAMES) with a fixed random state."""
    factories: dict[str, Callable[[], BaseEstimator]] = {
        "lr": lambda: LogisticRegression(solver="liblinear", max_iter=1000, random_state=seed),
        # Platt-scaled RBF SVM; sklearn 1.9 deprecates SVC(probability=True) for exactly this wrapper.
        "svm": lambda: CalibratedClassifierCV(SVC(kernel="rbf", random_state=seed), method="sigmoid", cv=5,
                                              ensemble=False),
        "gbdt": lambda: GradientBoostingClassifier(random_state=seed),
        "mlp": lambda: MLPClassifier(early_stopping=True, max_iter=500, random_state=seed),
        "lda": lambda: LinearDiscriminantAnalysis(),
        # sklearn >= 1.9 refuses the 'svd' solver when a class has fewer samples than features (91 STEM
        # students vs 112 features), so QDA uses the 'eigen' solver, whose `shrinkage` plays reg_param's role.
        "qda": lambda: QuadraticDiscriminantAnalysis(solver="eigen", shrinkage=0.5),
    }
    if name not in factories:
        raise ValueError(f"Unknown model {name!r}; known: {', '.join(MODEL_NAMES)}.")
    return factories[name]()


def _mlp_layers(widths: tuple[int, ...], max_depth: int) -> list[tuple[int, ...]]:
    return [t for depth in range(1, max_depth + 1) for t in itertools.product(widths, repeat=depth)]


def param_grid(name: str, preset: str) -> dict[str, list[Any]]:
    """The hyper-parameter grid of model ``name`` (keys without the pipeline prefix)."""
    paper = {
        "lr": {"C": _C_GRID, "l1_ratio": [1.0, 0.0]},
        "svm": {"C": _C_GRID, "class_weight": ["balanced", None]},
        "gbdt": {"n_estimators": [10, 25, 50, 120, 300], "max_depth": [2, 3, 5, 8],
                 "min_samples_leaf": [1, 2, 5, 10]},
        "mlp": {"hidden_layer_sizes": _mlp_layers((16, 64, 128, 256), 3)},
        "lda": {"n_components": [None, 1]},
        "qda": {"shrinkage": [0.1, 0.2, 0.3], "tol": [1e-4, 1e-3, 1e-2],   # paper: reg_param {0,.1,.2,.3}
                "priors": [None, [0.75, 0.25]]},
    }
    fast = {
        "lr": {"C": [1e-2, 1e-1, 1.0], "l1_ratio": [1.0, 0.0]},
        "svm": {"C": [1e-1, 1.0, 10.0], "class_weight": ["balanced", None]},
        "gbdt": {"n_estimators": [50, 120], "max_depth": [2, 3], "min_samples_leaf": [5]},
        "mlp": {"hidden_layer_sizes": [(16,), (64,), (64, 16)], "alpha": [1e-2, 1.0]},
        "lda": {"n_components": [None]},   # binary labels: n_components None and 1 are the same model
        "qda": {"shrinkage": [0.3, 0.6, 0.9, "auto"], "priors": [None, [0.75, 0.25]]},
    }
    tiny = {
        "lr": {"C": [0.1, 1.0], "l1_ratio": [0.0]},
        "svm": {"C": [1.0]},
        "gbdt": {"n_estimators": [10], "max_depth": [2]},
        "mlp": {"hidden_layer_sizes": [(8,)]},
        "lda": {"n_components": [None]},
        "qda": {"shrinkage": [0.5]},
    }
    presets = {"paper": paper, "fast": fast, "tiny": tiny}
    if preset not in presets:
        raise ValueError(f"Unknown grid preset {preset!r}; known: {', '.join(GRID_PRESETS)}.")
    if name not in presets[preset]:
        raise ValueError(f"Unknown model {name!r}; known: {', '.join(MODEL_NAMES)}.")
    return presets[preset][name]


def ranking_estimator(name: str, rfecv_estimator: str, seed: int) -> BaseEstimator:
    """The estimator RFECV ranks features with.

    ``rfecv_estimator='lr'`` (default): an L2 logistic regression for every model (cheap, and the only
    option for SVM-rbf, MLP and QDA, which expose neither ``coef_`` nor ``feature_importances_``).
    ``'same'``: the model itself with default parameters where it exposes importances (LR, GBDT, LDA), as in
    the authors' notebook; LR otherwise.
    """
    if rfecv_estimator == "same" and name in ("lr", "gbdt", "lda"):
        return make_model(name, seed)
    if rfecv_estimator not in ("same", "lr"):
        raise ValueError(f"rfecv_estimator must be 'lr' or 'same', got {rfecv_estimator!r}.")
    return LogisticRegression(solver="liblinear", max_iter=1000, random_state=seed)


def rfecv_step_value(step: float) -> int | float:
    """sklearn's RFECV ``step``: a fraction in (0, 1), or a whole number of features >= 1 as an int."""
    if 0 < step < 1:
        return float(step)
    if step >= 1 and float(step).is_integer():
        return int(step)
    raise ValueError(f"sklearn.rfecv_step must be a fraction in (0, 1) or a whole number >= 1, got {step!r}.")


def make_pipeline(name: str, *, scorer: Any, seed: int, rfecv: bool = True, rfecv_step: float = 1,
                  rfecv_folds: int = 5, rfecv_estimator: str = "lr", memory: Any = None) -> Pipeline:
    """``Pipeline([('scale', StandardScaler), ('select', RFECV), ('model', model)])``.

    ``rfecv_step`` < 1 removes that fraction of the features per RFE round (sklearn semantics); >= 1 removes
    that many (a whole number; configs hold it as a float, so 1.0 becomes sklearn's int 1).
    ``memory`` (a joblib.Memory or path) caches the scale+RFECV fit, which does not depend on the model's
    grid point, so GridSearchCV fits it once per fold instead of once per grid point.
    """
    steps: list[tuple[str, Any]] = [("scale", StandardScaler())]
    if rfecv:
        rfecv_step = rfecv_step_value(rfecv_step)
        cv = StratifiedKFold(rfecv_folds, shuffle=True, random_state=seed)
        steps.append(("select", RFECV(ranking_estimator(name, rfecv_estimator, seed), step=rfecv_step, cv=cv,
                                      scoring=scorer, min_features_to_select=1)))
    steps.append(("model", make_model(name, seed)))
    return Pipeline(steps, memory=memory)


def pipeline_grid(name: str, preset: str) -> dict[str, list[Any]]:
    """``param_grid`` with the pipeline prefix (``model__``, ``model__estimator__`` for the SVM)."""
    prefix = "model__estimator__" if name == "svm" else "model__"
    return {f"{prefix}{k}": v for k, v in param_grid(name, preset).items()}
