"""Jobs for heavy work: `POST /v1/jobs` `{"model": NAME, "instances": [...], "parameters": {...}}` -> 202 with
`Location: /v1/jobs/{id}`, and `GET /v1/jobs/{id}` -> its status, progress and, once it succeeded, the
predictions :predict would have given. The work itself is serve/jobs.py's; errors use the plain
{"error": message} shape of KServe v1, whose instances a job carries."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from inferopt.serve.errors import ServeError, as_serve_error
from inferopt.serve.http import ERROR_RESPONSES, error_response, json_response, read_body, server_state
from inferopt.serve.inference import require_model
from inferopt.serve.jobs import parse_job
from inferopt.serve.middleware import REQUEST_ID
from inferopt.serve.wire.docs import JobRequestDoc, json_body
from inferopt.tasks.base import KSERVE_V1

log = logging.getLogger("inferopt.serve")
router = APIRouter()
JOBS_PATH = "/v1/jobs"


@router.post(
    JOBS_PATH,
    status_code=202,
    summary="Submit a job: the instances of a :predict, run in the background, durable in Redis",
    responses=ERROR_RESPONSES,
    openapi_extra=json_body(JobRequestDoc),
)
async def submit_job(request: Request) -> Response:
    state = server_state(request)
    try:
        jobs = state.require_ready().require_jobs()
        body = await read_body(request, state.config.jobs_max_request_bytes, "--jobs-max-request-bytes")
        name, data = parse_job(body)
        require_model(state, KSERVE_V1, name)
        job = await jobs.submit(name, data)
    except Exception as exc:
        return _error(request, exc)
    location = f"{JOBS_PATH}/{job.id}"
    return json_response(
        {"id": job.id, "status": job.status, "items": job.items, "location": location},
        status=202,
        headers={"location": location},
    )


@router.get(JOBS_PATH + "/{job_id}", summary="A job's status and progress; its predictions once it succeeded")
async def get_job(request: Request, job_id: str) -> Response:
    try:
        jobs = server_state(request).require_ready().require_jobs()
        body = await jobs.status(job_id)
    except Exception as exc:
        return _error(request, exc)
    return Response(body, media_type="application/json")


def _error(request: Request, exc: Exception) -> Response:
    """The error as a response, as serve_inference makes them: a 500 names only the request id, which the log
    holds the cause under."""
    request_id = request.scope.get(REQUEST_ID, "-")
    error: ServeError = as_serve_error(exc, request_id)
    if error.status >= 500 and error.reason == "internal":
        log.error("request %s failed", request_id, exc_info=exc)
    server_state(request).metrics.rejected.labels(error.reason).inc()
    return error_response(error, plain=True)
