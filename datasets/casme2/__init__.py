"""CASME II (Yan et al., PLOS ONE 2014) TFDS builder (manual download)."""
