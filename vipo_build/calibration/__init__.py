"""Calibration: the judge against people. sample.py exports pairs to label, server.py is the A/B
labelling app that writes store.py's database, report.py scores judge and raters on the labels."""

DEFAULT_GOLD_FLOOR = 0.8  # a rater who misses more than one gold pair in five is not looking
