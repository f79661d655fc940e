"""The names of everything a dataset root holds, relative to the root (local path or URL).

    run.json                the resolved config, its hash, the data files' hashes, the version
    plan.parquet            the shard plan
    lock.json               while a run writes: its host, pid and start
    progress.json           the current run's rate (for `status`)
    summary.json            the last run's summary
    logs/                   run-{UTC start}.log of each run (see vipo_build/logs.py)
    prompts/                expanded prompts, a part of units at a time      (work files)
    cache/{category}/       candidates and verdicts per unit                 (work files)
    failed/{category}/      units a stage gave up on                          (work files)
    shards/                 tar, manifest and commit record of each shard    (the dataset)
    reports/                audit.{json,md,html}, plots/, calibration.json
    calibration/            the calibration sample, its media and the label database
"""

from __future__ import annotations

RUN_JSON = "run.json"
PLAN_PARQUET = "plan.parquet"
LOCK = "lock.json"
PROGRESS_JSON = "progress.json"  # this run's own rate, for `status` (ETA); not part of the dataset
SUMMARY_JSON = "summary.json"
LOGS_DIR = "logs"

PROMPTS_DIR = "prompts"
CACHE_DIR = "cache"
FAILED_DIR = "failed"
# What a run keeps to resume, not dataset content: which units beyond a filled quota got done
# before their category closed depends on timing.
WORK_DIRS = (PROMPTS_DIR, CACHE_DIR, FAILED_DIR)

SHARDS_DIR = "shards"

REPORTS_DIR = "reports"
PLOTS_DIR = f"{REPORTS_DIR}/plots"
CALIBRATION_REPORT = f"{REPORTS_DIR}/calibration.json"

CALIBRATION_DIR = "calibration"
SAMPLE_TABLE = f"{CALIBRATION_DIR}/sample.parquet"
LABELS_DB = f"{CALIBRATION_DIR}/labels.sqlite"
