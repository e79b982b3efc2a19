"""CAS(ME)^2 (Qu et al., IEEE TAC 2018) TFDS builder (manual download; micro-expressions only)."""
