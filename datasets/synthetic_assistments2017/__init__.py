"""Synthetic ASSISTments 2017 competition release in the official schema, with a planted ground truth.

``generate(out_dir, *, ground_truth_dir=None, num_students=1709, seed=0, ...)``; read with the
``assistments2017`` builder.
"""
from datasets.synthetic_assistments2017.generator import generate, skill_names

__all__ = ["generate", "skill_names"]
