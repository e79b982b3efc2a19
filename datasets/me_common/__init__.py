"""Shared code of the micro-expression builders (casme2, samm, casme_sq, casme3).

- ``annotations``: spreadsheet parsing with the documented quirks of each release;
- ``frames``: release-folder discovery and frame lookup by absolute frame number;
- ``preprocess``: temporal sampling, face crop / alignment, dynamic-image target;
- ``report``: the counted build report (``build_report.json``);
- ``builder``: the common ``tfds.core.GeneratorBasedBuilder`` base and class protocols.
"""
