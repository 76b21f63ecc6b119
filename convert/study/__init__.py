"""Compression study: one budget, ten ways to make the depth network small (`make study`).

config.py (StudyConfig YAML) → variants.py (how each row trains: blocks.py, tucker.py, prune.py,
distill.py, binary.py, qat.py, swap.py; fit.py is the shared loop) → measure.py (int8 conversion,
latency, size, MACs, MAE) → runner.py (order, resume) → report.py (table, chart, what wins).
"""
