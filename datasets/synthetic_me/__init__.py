"""Synthetic micro-expression releases in the official CASME II / SAMM / CAS(ME)^2 / CAS(ME)^3 layouts.

``generate(out_dir, 'casme2', ...)`` writes what a user's manual_dir would contain; see README.md.
"""
from datasets.synthetic_me.generator import DATASETS, PROFILES, generate, make_config, plan_release

__all__ = ["DATASETS", "PROFILES", "generate", "make_config", "plan_release"]
