"""CAS(ME)^3 Part A (Li et al., IEEE TPAMI 2023) TFDS builder (manual download)."""
