"""Simulated-5: synthetic knowledge-tracing data with oracle and Bayes-filter ceilings.

``generate(out_dir, ...)`` writes the raw files; the TFDS builder (``simulated5_dataset_builder``) reads them.
"""
from datasets.simulated5.generator import GROUND_TRUTH_FILE, bayes_filter, generate, next_step_auc

__all__ = ["GROUND_TRUTH_FILE", "bayes_filter", "generate", "next_step_auc"]
