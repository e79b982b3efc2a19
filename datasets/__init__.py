"""TFDS builders (TF-free: array_record + tfds.data_source) and synthetic generators."""
