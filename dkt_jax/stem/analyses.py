"""Analyses behind "STEM students show higher mastery and higher learning gain" (dkt_spec.md §6.5).

* Normalized learning gain NLG = (post - pre) / (1 - pre), where pre/post are the first/last values of
  the 10-step moving average of the per-step mean mastery; STEM vs non-STEM with a Welch t-test.
* Per-skill Pearson correlation of final mastery with isSTEM for BKT (last ``Ln`` per (student, skill),
  missing skills filled with the student's row mean), DKT and DKT+; drawn as a heatmap.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """'valid' moving average of (T,) values; the window shrinks to T for sequences shorter than it."""
    values = np.asarray(values, np.float64)
    w = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(w) / w, mode="valid")


def normalized_learning_gain(mean_mastery: np.ndarray, window: int = 10) -> float:
    """NLG of one student from the (T,) mean-mastery trajectory (nan when pre == 1)."""
    smooth = moving_average(mean_mastery, window)
    pre, post = smooth[0], smooth[-1]
    return float((post - pre) / (1.0 - pre)) if pre < 1.0 else float("nan")


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Standardized mean difference (a - b) / pooled std."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def group_comparison(values: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """STEM (label 1) vs non-STEM (label 0): means, stds, Welch t-test and Cohen's d of (N,) values."""
    values, labels = np.asarray(values, np.float64), np.asarray(labels)
    ok = np.isfinite(values)
    stem, non = values[ok & (labels == 1)], values[ok & (labels == 0)]
    t, p = stats.ttest_ind(stem, non, equal_var=False)
    return {"stem_mean": float(stem.mean()), "stem_std": float(stem.std(ddof=1)), "stem_n": int(len(stem)),
            "non_stem_mean": float(non.mean()), "non_stem_std": float(non.std(ddof=1)), "non_stem_n": int(len(non)),
            "welch_t": float(t), "welch_p": float(p), "cohens_d": cohens_d(stem, non)}


def nlg_analysis(trajectories: Sequence[np.ndarray], labels: np.ndarray, window: int = 10) -> dict:
    """Per-student NLG (N,) plus the STEM vs non-STEM comparison and the group-level NLG."""
    labels = np.asarray(labels)
    pre = np.array([moving_average(t, window)[0] for t in trajectories])
    post = np.array([moving_average(t, window)[-1] for t in trajectories])
    nlg = np.array([normalized_learning_gain(t, window) for t in trajectories])
    out = {"window": window, "nlg": nlg, "pre": pre, "post": post, **group_comparison(nlg, labels)}
    for key, mask in (("stem", labels == 1), ("non_stem", labels == 0)):
        pre_m, post_m = pre[mask].mean(), post[mask].mean()
        out[f"{key}_group_nlg"] = float((post_m - pre_m) / (1 - pre_m))
    return out


def plot_nlg(result: dict, labels: np.ndarray, path: str, title: str = "DKT+ normalized learning gain") -> str:
    """Box plot + jittered points of NLG for non-STEM vs STEM; writes a PNG."""
    labels = np.asarray(labels)
    nlg = result["nlg"]
    groups = [nlg[(labels == 0) & np.isfinite(nlg)], nlg[(labels == 1) & np.isfinite(nlg)]]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.boxplot(groups, showmeans=True)
    ax.set_xticks([1, 2], [f"non-STEM (n={len(groups[0])})", f"STEM (n={len(groups[1])})"])
    rng = np.random.default_rng(0)
    for k, g in enumerate(groups, start=1):
        ax.scatter(k + rng.uniform(-0.15, 0.15, len(g)), g, s=5, alpha=0.35)
    ax.set_ylabel("NLG = (post - pre) / (1 - pre)")
    ax.set_title(f"{title}\nWelch t={result['welch_t']:.2f}, p={result['welch_p']:.2g}, d={result['cohens_d']:.2f}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pearson_per_column(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pearson r of each column of (N, M) ``features`` with (N,) labels; nan for constant columns."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    xc, yc = x - x.mean(0), y - y.mean()
    denom = np.sqrt((xc ** 2).sum(0) * (yc ** 2).sum())
    constant = x.std(0) <= 1e-9 * np.maximum(1.0, np.abs(x).max(0)) if len(x) else np.ones(x.shape[1], bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((denom > 0) & ~constant, (xc * yc[:, None]).sum(0) / denom, np.nan)


def welch_per_column(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Welch t statistic and p-value per column, STEM vs non-STEM ((M,), (M,))."""
    labels = np.asarray(labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        t, p = stats.ttest_ind(features[labels == 1], features[labels == 0], equal_var=False, axis=0)
    return np.asarray(t), np.asarray(p)


def bkt_final_mastery(skills: Sequence[np.ndarray], ln: Sequence[np.ndarray], num_skills: int) -> np.ndarray:
    """(N, M) last BKT ``Ln`` per (student, skill); never-practised skills get the student's row mean."""
    out = np.full((len(skills), num_skills), np.nan)
    for i, (s, v) in enumerate(zip(skills, ln)):
        s, v = np.asarray(s), np.asarray(v, np.float64)
        ok = np.isfinite(v) & (s >= 0)
        out[i, s[ok]] = v[ok]  # numpy assigns in order, so the last occurrence wins
    with np.errstate(invalid="ignore"):
        row_mean = np.nanmean(np.where(np.isnan(out), np.nan, out), axis=1) if out.size else np.zeros(0)
    return np.where(np.isnan(out), row_mean[:, None], out)


def plot_correlation_heatmap(correlations: dict[str, np.ndarray], path: str,
                             skill_vocab: Sequence[str] | None = None) -> str:
    """Heatmap of per-skill Pearson r (rows: BKT / DKT / DKT+, columns: skills); writes a PNG."""
    names = list(correlations)
    matrix = np.stack([correlations[n] for n in names])
    lim = max(0.05, float(np.nanmax(np.abs(matrix)))) if np.isfinite(matrix).any() else 1.0
    fig, ax = plt.subplots(figsize=(max(8, matrix.shape[1] * 0.12), 1.2 + 0.5 * len(names)))
    im = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("skill index" + (" (see skill_vocab.json)" if skill_vocab is not None else ""))
    ax.set_title("Pearson r of final mastery with isSTEM, per skill")
    fig.colorbar(im, ax=ax, fraction=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def correlation_summary(r: np.ndarray, top: Sequence[int] | None = None) -> dict[str, float]:
    """Mean / max |r| and the share of positive r over finite skills (optionally on a subset ``top``)."""
    r = np.asarray(r, np.float64)
    sel = r if top is None else r[np.asarray(top, int)]
    sel = sel[np.isfinite(sel)]
    if len(sel) == 0:
        return {"mean_r": float("nan"), "max_abs_r": float("nan"), "share_positive": float("nan"), "n": 0}
    return {"mean_r": float(sel.mean()), "max_abs_r": float(np.abs(sel).max()),
            "share_positive": float((sel > 0).mean()), "n": int(len(sel))}


def load_ground_truth(ground_truth_dir: str | None, student_ids: np.ndarray, skill_vocab: Sequence[str]) -> dict | None:
    """Planted truth of the synthetic generator for these students (None when not available)."""
    import json
    import os

    import pandas as pd

    if not ground_truth_dir or not os.path.exists(os.path.join(ground_truth_dir, "students.csv")):
        return None
    table = pd.read_csv(os.path.join(ground_truth_dir, "students.csv")).set_index("ITEST_id")
    rows = table.loc[student_ids]
    out = {"table": rows}
    mastery_path = os.path.join(ground_truth_dir, "mastery.npz")
    if os.path.exists(mastery_path):
        with np.load(mastery_path, allow_pickle=False) as z:
            index = {int(s): i for i, s in enumerate(z["ITEST_id"])}
            names = [str(s) for s in z["skill_vocab"]]
            column = {n: j for j, n in enumerate(names)}
            cols = [column.get(s, -1) for s in skill_vocab]
            final = z["final_mastery"][[index[int(s)] for s in student_ids]]
            out["final_mastery"] = np.stack([final[:, j] if j >= 0 else np.full(len(final), np.nan)
                                             for j in cols], axis=1)
            out["is_stem_skill"] = np.array([bool(z["is_stem_skill"][j]) if j >= 0 else False for j in cols])
    effects_path = os.path.join(ground_truth_dir, "effects.json")
    if os.path.exists(effects_path):
        with open(effects_path, encoding="utf-8") as f:
            out["effects"] = json.load(f)
    return out


def tracking_correlation(estimate: np.ndarray, truth: np.ndarray, columns: Sequence[int] | None = None) -> float:
    """How well an (N, M) estimated final state tracks the (N, M) true final mastery: the Pearson r across
    students per skill, averaged over skills (``columns``, default all; constant columns skipped)."""
    cols = range(truth.shape[1]) if columns is None else columns
    rs = []
    for j in cols:
        a, b = np.asarray(estimate[:, j], np.float64), np.asarray(truth[:, j], np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() > 2 and a[ok].std() > 1e-9 and b[ok].std() > 1e-9:
            rs.append(float(np.corrcoef(a[ok], b[ok])[0, 1]))
    return float(np.mean(rs)) if rs else float("nan")


def run_analyses(student_ids: np.ndarray, labels: np.ndarray, skills: Sequence[np.ndarray],
                 ln: Sequence[np.ndarray], exports: dict, skill_vocab: Sequence[str], out_dir: str, *,
                 window: int = 10, ground_truth_dir: str | None = None,
                 extra_states: dict[str, np.ndarray] | None = None) -> dict:
    """NLG (per KT model) and per-skill correlations for the labelled students; PNGs + a numbers dict.

    exports: 'dkt' / 'dkt_plus' -> export.Export aligned with ``student_ids``.
    extra_states: more final-state estimators for the correlation rows only (e.g. the fitted BKT), (N, M).
    """
    import os

    labels = np.asarray(labels)
    results: dict = {"nlg": {}, "final_mastery": {}, "correlation": {}}
    for name, ex in exports.items():
        nlg = nlg_analysis(ex.trajectories, labels, window)
        results["nlg"][name] = {k: v for k, v in nlg.items() if not isinstance(v, np.ndarray)}
        plot_nlg(nlg, labels, os.path.join(out_dir, f"nlg_{name}.png"), title=f"{name} normalized learning gain")
        results["final_mastery"][name] = group_comparison(ex.final_states.mean(1), labels)
    rows = {"BKT (last Ln)": bkt_final_mastery(skills, ln, len(skill_vocab))}
    rows.update(extra_states or {})
    rows.update({{"dkt": "DKT", "dkt_plus": "DKT+"}.get(k, k): ex.final_states for k, ex in exports.items()})
    truth = load_ground_truth(ground_truth_dir, np.asarray(student_ids), skill_vocab)
    if truth is not None and "final_mastery" in truth:
        rows["true mastery (generator)"] = truth["final_mastery"]
    corr = {name: pearson_per_column(x, labels) for name, x in rows.items()}
    plot_correlation_heatmap(corr, os.path.join(out_dir, "skill_correlation_heatmap.png"), skill_vocab)
    stem_skills = np.flatnonzero(truth["is_stem_skill"]) if truth is not None and "is_stem_skill" in truth else None
    for name, r in corr.items():
        entry = {"all_skills": correlation_summary(r)}
        if stem_skills is not None:
            entry["planted_stem_skills"] = correlation_summary(r, stem_skills)
        if "true mastery (generator)" in corr and name != "true mastery (generator)":
            ok = np.isfinite(r) & np.isfinite(corr["true mastery (generator)"])
            entry["pearson_with_true_profile"] = (float(np.corrcoef(r[ok], corr["true mastery (generator)"][ok])[0, 1])
                                                  if ok.sum() > 2 else float("nan"))
            entry["tracks_true_mastery"] = tracking_correlation(rows[name], truth["final_mastery"])
            if stem_skills is not None:
                entry["tracks_true_mastery_stem_skills"] = tracking_correlation(rows[name], truth["final_mastery"],
                                                                                stem_skills)
        results["correlation"][name] = entry
    np.savez_compressed(os.path.join(out_dir, "skill_correlations.npz"), names=np.array(list(corr)),
                        r=np.stack(list(corr.values())), skill_vocab=np.asarray(skill_vocab))
    if truth is not None:
        table = truth["table"]
        gt = {"labels_match": bool((table["isSTEM"].to_numpy() == labels).all())}
        for column in ("learning_gain", "mean_final_mastery", "stem_mastery"):
            if column in table:
                gt[column] = group_comparison(table[column].to_numpy(), labels)
        gt["effects_all_students"] = truth.get("effects")
        results["ground_truth"] = gt
    return results
