"""Takes jobs off the redis list and stores each result (the testing example)."""

import os

import redis

store = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
print("worker: waiting for jobs", flush=True)
while True:
    _, job = store.blpop(["jobs"])
    job_id, _, text = job.partition(" ")
    store.set(f"result:{job_id}", text.upper())
    print(f"worker: did {job_id}", flush=True)
