"""RunPod queue-based serverless handler for NeuroVol (runs inside Dockerfile.gpu).

RunPod's platform owns the public API (POST /v2/{endpoint}/run, GET /status/{id},
POST /cancel/{id}, bearer key) and its queue; this handler receives each job and forwards
its `input` unchanged to `neurovol-worker`, started once on loopback in the same container,
then polls it and returns its `output` (or an `error`, which RunPod reports as FAILED).
The worker does the download (size limits), the single-3D-NIfTI check, inference and the
uploads; this file never logs the input (its URLs carry signatures).

Documentation-grade: not run in CI (needs the `runpod` package and RunPod's job source).
"""

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request

import runpod

KEY = secrets.token_hex(32)
WORKER = subprocess.Popen(
    [os.environ.get("NEUROVOL_WORKER_BIN", "neurovol-worker"), "--listen", "127.0.0.1:0", "--exit-on-stdin-eof"],
    env={**os.environ, "NEUROVOL_WORKER_API_KEY": KEY, "NEUROVOL_WORKER_ENDPOINT_ID": "local"},
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
)
_line = WORKER.stdout.readline().strip()
if not _line.startswith("neurovol-worker ready at "):
    raise SystemExit("neurovol-worker did not start")
BASE = _line.removeprefix("neurovol-worker ready at ") + "/v2/local"


def _call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"Authorization": "Bearer " + KEY, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)


def handler(job):
    started = _call("POST", "/run", {"input": job["input"]})
    if "id" not in started:
        return {"error": started.get("error", "the worker refused the job")}
    job_id = started["id"]
    while True:
        s = _call("GET", "/status/" + job_id)
        status = s.get("status")
        if status == "COMPLETED":
            return s["output"]
        if status in ("FAILED", "TIMED_OUT", "CANCELLED"):
            return {"error": s.get("error") or status.lower()}
        if status is None:
            return {"error": s.get("error", "lost track of the job")}
        time.sleep(0.5)


runpod.serverless.start({"handler": handler})
