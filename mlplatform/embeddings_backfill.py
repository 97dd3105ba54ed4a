"""Another team's GPU batch job: embed one day of transactions, one shard per pod.

Each pod is scheduled with its GPU and then waits for its input partition (the
``_SUCCESS`` marker the upstream export writes when the day is complete), as
Spark/Beam consumers do. When the export never lands, the pods sit there,
Running and idle, holding their GPUs: nothing on the GPU, nothing in progress,
a log line every few minutes. That is the capacity the gpu-insufficient-capacity
drill finds taken.

Env: ``INPUT_ROOT`` (mounted data lake folder), ``INPUT_TABLE``, ``INPUT_DATE``,
``POLL_SECONDS`` (300), ``EMBED_SECONDS`` (time one shard takes once its input is there).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from mlops_drill.mlplatform import appkit

APP = "embeddings-backfill"


def main() -> None:
    appkit.set_app_name(APP)
    table = os.environ.get("INPUT_TABLE", "txn_features_daily")
    day = os.environ.get("INPUT_DATE", "")
    partition = f"{table}/dt={day}"
    marker = Path(os.environ.get("INPUT_ROOT", "/mnt/datalake")) / table / f"dt={day}" / "_SUCCESS"
    poll = appkit.env_float("POLL_SECONDS", 300.0)
    shard = os.environ.get("JOB_COMPLETION_INDEX", "0")
    appkit.log("info", "starting", shard=shard, partition=partition,
               gpus=os.environ.get("NVIDIA_VISIBLE_DEVICES", "").split(",") if os.environ.get(
                   "NVIDIA_VISIBLE_DEVICES") else [])
    waited = 0.0
    while not marker.exists():
        appkit.log("info", "input partition not complete yet (no _SUCCESS marker); waiting", partition=partition,
                   waited_s=round(waited), next_check_s=round(poll))
        time.sleep(poll)
        waited += poll
    appkit.log("info", "input partition complete; embedding shard", partition=partition, shard=shard)
    time.sleep(appkit.env_float("EMBED_SECONDS", 60.0))
    appkit.log("info", "shard done", partition=partition, shard=shard)


if __name__ == "__main__":
    main()
