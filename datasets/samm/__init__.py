"""SAMM (Davison et al., IEEE TAC 2018) TFDS builder (manual download)."""
