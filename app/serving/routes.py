"""The REST API's routes: answers, documents and status, on one module-level router (as vLLM's
``entrypoints/openai`` keeps its routes), apart from the app's assembly (``app.py``: middleware, error handlers,
the UI) and from the request and response models (``api_models.py``).

A route gets the server's state, the ``Service``, through a dependency, so it reads as what it does: build the
typed request, hand it to the service, return or stream what comes back.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sotrag.app.events import AnswerDone
from sotrag.app.serving.api_models import (
    AnswerRequest,
    AnswerResponse,
    DeleteResponse,
    DocumentList,
    ErrorEvent,
    ErrorResponse,
    Health,
    Readiness,
    UploadResponse,
    sse_event_schema,
)
from sotrag.app.serving.disconnect import run_unless_disconnected
from sotrag.app.serving.errors import AnswerFailed, DocumentTooLarge
from sotrag.app.serving.limits import Busy
from sotrag.app.serving.probes import readiness
from sotrag.app.serving.service import AnswerRun, Service

router = APIRouter()


def get_service(request: Request) -> Service:
    """The server's state, which ``create_app`` keeps on the app."""
    return cast(Service, request.app.state.service)


ServiceDep = Annotated[Service, Depends(get_service)]

SSE_DESCRIPTION = """With `stream=true`: a `text/event-stream` of the pipeline's typed events, one JSON object per
`data:` line, its `type` also in the `event:` line. Order: `sources` (when an index is configured), `route`
(mode `auto`), `skeleton_delta`..., `skeleton_done`, `point_started` x N, interleaved `point_delta`/`point_done`
(every point streams at the same time), `answer_done` (its `result` is an AnswerResponse). Normal decoding (or a
SoT `fallback`) streams `answer_delta` instead. With eager expansion a point can start while the skeleton still
streams; a `skeleton_retry` or a `fallback` discards the points so far, and a `point_withdrawn` takes one started
point back (its text is not part of the answer; a `point_started` of the same index may follow): every started
point ends with `point_done` or `point_withdrawn`. A stream that fails after it started ends with an `error` event.
The schemas are in components: `SourcesEvent`, `RouteEvent`, `SkeletonDelta`, `SkeletonDone`, `PointStarted`,
`PointDelta`, `PointDone`, `PointWithdrawn`, `SkeletonRetry`, `FallbackEvent`, `AnswerDelta`, `AnswerDone`,
`ErrorEvent`."""

# What the middleware and request parsing can answer, documented on the routes where they can happen.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "an API key is configured and none (or a wrong one) was sent"},
    403: {"model": ErrorResponse, "description": "a cross-site request, or a write that needs the admin key"},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    400: {"model": ErrorResponse, "description": "the body could not be parsed (e.g. a broken multipart form)"},
    422: {"model": ErrorResponse, "description": "invalid request"},
}
INDEX_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "the server has no index"},
    503: {"model": ErrorResponse, "description": "the index is still loading"},
}
INDEX_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **INDEX_ERRORS,
    423: {"model": ErrorResponse, "description": "another process is writing to the index; try again"},
}


@router.get("/healthz", response_model=Health, tags=["status"], summary="The process is alive")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    tags=["status"],
    summary="The engine and the index are loaded (503 until then)",
    responses={503: {"model": Readiness, "description": "starting, or failed to start"}},
)
async def readyz(service: ServiceDep) -> JSONResponse:
    body = readiness(service)  # the same as ProbeMiddleware answers; this route documents it
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if body.ready else 503)


@router.get("/metrics", tags=["status"], summary="Prometheus metrics", response_class=Response, responses=AUTH_ERRORS)
async def metrics(service: ServiceDep) -> Response:
    service.refresh_metrics()
    data, content_type = service.metrics.render()
    return Response(data, media_type=content_type)


@router.post(
    "/v1/answer",
    tags=["answer"],
    summary="Answer a question (JSON, or Server-Sent Events with stream=true)",
    response_model=AnswerResponse,
    responses={
        **BODY_ERRORS,
        200: {
            "description": "the answer (JSON), or with stream=true an event stream. " + SSE_DESCRIPTION,
            "content": {"text/event-stream": {"schema": sse_event_schema(json_data=True)}},
        },
        413: {"model": ErrorResponse, "description": "the question or history is over a limit or the context"},
        422: {"model": ErrorResponse, "description": "empty question or invalid request"},
        429: {"model": ErrorResponse, "description": "every answer slot and queue place is taken (Retry-After)"},
        503: {"model": ErrorResponse, "description": "the engine is not ready, or it stopped"},
        504: {"model": ErrorResponse, "description": "the answer ran past the server's time limit"},
    },
)
async def answer(body: AnswerRequest, request: Request, service: ServiceDep) -> Any:
    answer_request = body.to_request(service.sampling_for(max_tokens=body.max_tokens, temperature=body.temperature))
    run = await service.answer(answer_request, surface="rest")
    if body.stream:
        return StreamingResponse(
            _sse(run, service),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await run_unless_disconnected(run, request)
    return service.response_for(result)


@router.get(
    "/v1/documents",
    response_model=DocumentList,
    tags=["documents"],
    summary="Documents in the index",
    responses={**AUTH_ERRORS, **INDEX_ERRORS},
)
async def list_documents(service: ServiceDep) -> DocumentList:
    docs = await asyncio.to_thread(service.list_documents)
    status = await asyncio.to_thread(service.index_status)
    return DocumentList(documents=docs, chunks=status.chunks if status else 0)


@router.post(
    "/v1/documents",
    response_model=UploadResponse,
    status_code=201,
    tags=["documents"],
    summary="Upload files (markdown, text, HTML, PDF) into the index",
    responses={
        **BODY_ERRORS,
        **INDEX_WRITE_ERRORS,
        409: {"model": ErrorResponse, "description": "two files of the upload have the same name"},
        413: {"model": ErrorResponse, "description": "a file is over the upload size limit"},
        415: {"model": ErrorResponse, "description": "unsupported file type"},
        422: {"model": ErrorResponse, "description": "nothing could be indexed from the files"},
        507: {"model": ErrorResponse, "description": "the index cannot be written (disk full, read-only)"},
    },
)
async def upload_documents(
    files: Annotated[list[UploadFile], File(description="one or more files")], service: ServiceDep
) -> Any:
    service.require_index()
    names = [service.check_upload(f.filename, f.size) for f in files]  # reject before writing anything
    staged: list[tuple[str, Path]] = []
    try:
        for name, f in zip(names, files, strict=True):
            staged.append((name, await _stage(f, service.max_upload_bytes)))
        return await service.add_documents(staged)
    finally:
        for _, path in staged:
            path.unlink(missing_ok=True)


@router.delete(
    "/v1/documents/{doc_id}",
    response_model=DeleteResponse,
    tags=["documents"],
    summary="Remove a document from the index",
    responses={
        **AUTH_ERRORS,
        **INDEX_WRITE_ERRORS,
        404: {"model": ErrorResponse, "description": "no such document, or the server has no index"},
    },
)
async def delete_document(doc_id: str, service: ServiceDep) -> DeleteResponse:
    return DeleteResponse(removed=await service.remove_document(doc_id))


async def _stage(upload: UploadFile, limit: int) -> Path:
    """Copy an upload to a temporary file, enforcing the size limit while reading (no size header needed)."""
    fd, name = tempfile.mkstemp(prefix="sotrag-upload-")
    path = Path(name)
    size = 0
    try:
        with open(fd, "wb") as out:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise DocumentTooLarge(f"{upload.filename} is over the upload limit of {limit} bytes")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


async def _sse(run: AnswerRun, service: Service) -> AsyncIterator[str]:
    """Format the answer's events as SSE. A client that leaves cancels this, and with it the answer."""
    try:
        async for event in run.events():
            if isinstance(event, AnswerDone):
                result = service.response_for(event.result).model_dump(mode="json")
                data = json.dumps({"type": "answer_done", "result": result})
            else:
                data = event.model_dump_json()
            yield f"event: {event.type}\ndata: {data}\n\n"
    except (AnswerFailed, Busy) as exc:
        yield f"event: error\ndata: {ErrorEvent(detail=str(exc)).model_dump_json()}\n\n"
