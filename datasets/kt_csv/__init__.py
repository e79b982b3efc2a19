"""3-lines-per-student knowledge-tracing CSVs (DKT+ repo format): reader/writer and TFDS builder."""
from datasets.kt_csv.three_line import Record, read_three_line, remap, skill_vocab, write_three_line

__all__ = ["Record", "read_three_line", "remap", "skill_vocab", "write_three_line"]
