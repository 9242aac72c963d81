"""A FastAPI app that hands jobs to a worker through redis (the testing example)."""

import os
import uuid

import redis.asyncio as redis
from fastapi import FastAPI, HTTPException

app = FastAPI()
store = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


@app.get("/health")
async def health() -> dict[str, str]:
    await store.ping()
    return {"status": "ok"}


@app.post("/jobs")
async def submit(job: dict[str, str]) -> dict[str, str]:
    job_id = uuid.uuid4().hex
    await store.rpush("jobs", f"{job_id} {job['text']}")
    return {"id": job_id}


@app.get("/jobs/{job_id}")
async def result(job_id: str) -> dict[str, str]:
    done = await store.get(f"result:{job_id}")
    if done is None:
        raise HTTPException(404, "not done yet")
    return {"id": job_id, "result": done}
