"""FDP training + leave-one-subject-out evaluation (the loop: ``launch.train_fdp.train_and_evaluate``).

    python -m launch.fdp --config=launch/configs/fdp_demo.py --workdir=workdirs/fdp_demo [--config.x=y ...]

Re-running with the same workdir resumes: finished folds keep their predictions, an interrupted fold
continues from its latest checkpoint. Outputs: results.json, report.md, plots/*.png, metrics.jsonl,
tensorboard/, folds/<subject>/{predictions.npz, checkpoints/}. ``--config.seeds=0,1,2``: those outputs per seed in
``<workdir>/seed_<s>/``, and results.json / report.md with the mean ± std over seeds in ``<workdir>``.
"""
from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from launch.runtime import compile_cache
from launch.runtime.cli import exit_on_user_error, parse_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to an FDP config .py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (re-use it to resume).")
_KEEP_HOST_MEMORY = flags.DEFINE_bool(
    "keep_host_memory", True, "glibc keeps freed host memory for reuse (launch.runtime.host_memory): no per-step page "
    "faults of XLA:CPU's temporary buffers; the memory freed by each XLA compilation is returned to the OS before "
    "the compiled step runs (lower peak RSS). --nokeep_host_memory leaves malloc as is.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _KEEP_HOST_MEMORY.value:
        from launch.runtime.host_memory import keep_freed_host_memory, release_after_compiles
        if keep_freed_host_memory():
            release_after_compiles()
    from launch import train_fdp  # after flag parsing: jax is configured by then
    from launch.runtime.progress import set_default_verbosity

    set_default_verbosity()
    compile_cache.enable_compilation_cache()  # --compile_cache_dir; re-runs skip compiling
    results = exit_on_user_error("launch.fdp", train_fdp.train_and_evaluate, _CONFIG.value, _WORKDIR.value)
    if "summary" in results:  # several seeds (--config.seeds): mean ± sample std over seeds
        summary = results["summary"]
        stats = {f"{k}_{stat}": None if summary[k][stat] is None else round(summary[k][stat], 4)
                 for k in ("uf1", "uar", "accuracy", "di_psnr") if k in summary for stat in ("mean", "std")}
        print(json.dumps({"dataset": results["dataset"], "seeds": results["seeds"], **stats,
                          "std_ddof": summary["std_ddof"], "leaky_select_on_test": results["select_on_test"],
                          "wall_time_s": round(results["wall_time_s"], 1)}))
    else:
        pooled = results["pooled"]
        summary = {k: round(pooled[k], 4) for k in ("uf1", "uar", "accuracy", "weighted_f1", "di_mse") if k in pooled}
        print(json.dumps({"dataset": results["dataset"], "folds": len(pooled["per_fold"]),
                          "test_clips": pooled["num_samples"], **summary,
                          "leaky_select_on_test": results["select_on_test"],
                          "wall_time_s": round(results["wall_time_s"], 1)}))
        spread = _CONFIG.value.get("reference_seed_spread")
        if spread and "uf1" in pooled:  # where this run falls in the config's measured seed spread
            z = (pooled["uf1"] - spread.uf1_mean) / spread.uf1_std
            print(f"UF1 {pooled['uf1']:.3f} is {z:+.1f} std from this config's {spread.seeds}-seed mean "
                  f"{spread.uf1_mean:.3f} ± {spread.uf1_std:.3f} ({spread.source}).")
    print(f"Report: {_WORKDIR.value}/report.md")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
