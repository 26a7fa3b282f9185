"""``sotrag serve``: the REST API, the OpenAI-compatible endpoint and the web UI in one process.

With no ``--index`` (and no ``SOTRAG_INDEX_DIR``) it serves over a demo index built on first run from the
project's own README and docs/, so a new user can ask sotrag about sotrag; later runs only re-embed files
that changed. ``--no-index`` answers ungrounded.
"""

import asyncio
import logging
import socket
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

import sotrag
from sotrag.app.config import Settings

PROJECT_ROOT = Path(sotrag.__file__).resolve().parent


def demo_index_dir() -> Path:
    """``.sotrag/demo-index`` in a source checkout, else the user's cache folder."""
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / ".sotrag" / "demo-index"
    return Path.home() / ".cache" / "sotrag" / "demo-index"


def demo_sources() -> list[Path]:
    return [p for p in (PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs") if p.exists()]


def register(app: typer.Typer) -> None:
    """Add ``serve`` to sotrag's command line."""
    from sotrag.app.cli.common import (
        BackendOption,
        DataParallelOption,
        PipelineParallelOption,
        PresetChoice,
        TensorParallelOption,
        engine_settings,
        fail,
        load_settings,
        quiet_vllm,
        with_options,
    )

    @app.command()
    def serve(
        model: Annotated[str | None, typer.Option(help="hub id or local model folder")] = None,
        index: Annotated[
            str | None, typer.Option(help="document index folder (created if missing); default: the demo index")
        ] = None,
        no_index: Annotated[bool, typer.Option("--no-index", help="no documents: answer ungrounded")] = False,
        host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
        preset: Annotated[PresetChoice | None, typer.Option(help="cpu or gpu defaults")] = None,
        max_upload_mb: Annotated[
            float | None, typer.Option(help="largest document upload, in MiB (SOTRAG_LIMITS__MAX_UPLOAD_MB, 20)")
        ] = None,
        tensor_parallel_size: TensorParallelOption = None,
        pipeline_parallel_size: PipelineParallelOption = None,
        data_parallel_size: DataParallelOption = None,
        distributed_executor_backend: BackendOption = None,
        api_key: Annotated[
            str | None,
            typer.Option(help="clients must send it as a bearer token; the UI asks for it. Visible to every user "
                         "in `ps`: prefer --api-key-file or SOTRAG_API_KEY"),
        ] = None,
        api_key_file: Annotated[
            Path | None, typer.Option(help="read the API key from this file (its first line)")
        ] = None,
        admin_api_key: Annotated[
            str | None, typer.Option(help="key that document uploads and deletes need. Visible in `ps`: prefer "
                                     "--admin-api-key-file or SOTRAG_ADMIN_API_KEY")
        ] = None,
        admin_api_key_file: Annotated[
            Path | None, typer.Option(help="read the admin key from this file (its first line)")
        ] = None,
        allowed_host: Annotated[
            list[str] | None,
            typer.Option("--allowed-host", help="a Host name this server answers besides 127.0.0.1, localhost and "
                         "[::1]; repeatable (or SOTRAG_SERVER__ALLOWED_HOSTS)"),
        ] = None,
        read_only: Annotated[bool, typer.Option("--read-only", help="refuse document uploads and deletes")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show the engine's logs")] = False,
        engine_url: Annotated[
            list[str] | None,
            typer.Option("--engine-url", help="a running vLLM OpenAI server (…/v1) to answer with; repeatable"),
        ] = None,
    ) -> None:
        """Serve the web UI (at /), the REST API (/v1/answer, /docs) and the OpenAI endpoint (/v1/chat/completions)."""
        quiet_vllm(verbose)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("sotrag").setLevel(logging.DEBUG if verbose else logging.INFO)
        keys = {
            "api_key": _key_option("api_key", api_key, api_key_file),
            "admin_api_key": _key_option("admin_api_key", admin_api_key, admin_api_key_file),
        }
        settings = load_settings(**keys)  # with the keys of the command line: require_auth sees them
        engine_cfg = engine_settings(
            settings,
            urls=engine_url,
            verbose=verbose,
            model=model,
            preset=preset and preset.value,
            tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size,
            data_parallel_size=data_parallel_size,
            distributed_executor_backend=distributed_executor_backend,
        )
        updates: dict[str, object] = {"engine": engine_cfg}
        server_updates: dict[str, object] = {}
        if read_only:
            server_updates["read_only"] = True
        if allowed_host:
            server_updates["allowed_hosts"] = [*settings.server.allowed_hosts, *allowed_host]
        if server_updates:
            updates["server"] = with_options(settings.server, flags={"allowed_hosts": "--allowed-host"},
                                             **server_updates)
        if max_upload_mb is not None:
            updates["limits"] = with_options(settings.limits, max_upload_mb=max_upload_mb)  # validated: no nan/inf
        settings = settings.model_copy(update=updates)
        if port < 0 or port > 65535:
            raise fail(f"--port must be between 0 and 65535, not {port}", 2)
        try:  # bound now, before anything starts: a port in use is one line, not a traceback after the engine
            sockets = listen_sockets(host, port)
        except (OSError, UnicodeError) as exc:  # UnicodeError: a host name IDNA cannot encode
            shown = host.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise fail(f"cannot listen on {shown}:{port}: {_socket_problem(exc)}", 2) from None
        if host not in ("127.0.0.1", "localhost", "::1"):
            if settings.api_key is None:
                typer.echo(
                    f"warning: serving on {host} without an API key: anyone who can reach this address can ask, "
                    "read and change your documents. Set --api-key-file (or SOTRAG_API_KEY).",
                    err=True,
                )
            if not settings.server.allowed_hosts:
                typer.echo(
                    f"warning: serving on {host}, but only requests addressed to 127.0.0.1, localhost or [::1] are "
                    "answered (others get 421): name this server's host with --allowed-host (or "
                    "SOTRAG_SERVER__ALLOWED_HOSTS).",
                    err=True,
                )

        from sotrag.app.engines.base import EngineError
        from sotrag.app.engines.model_source import resolve_model

        if engine_cfg.load_format != "dummy" and not engine_cfg.remote:
            try:  # one clear line now, instead of a failed engine after the server started
                resolve_model(engine_cfg.resolved_model)
            except EngineError as exc:
                raise fail(str(exc), 1) from None

        sources: list[Path] = []
        if no_index:
            index_dir: str | None = None
        elif index or settings.index_dir:
            index_dir = index or settings.index_dir
        else:
            index_dir = str(demo_index_dir())
            sources = demo_sources()
        _preload(settings, index_dir is not None)
        try:
            code = asyncio.run(_serve(settings, index_dir, sources, host, port, sockets))
        finally:
            for sock in sockets:
                sock.close()
        if code:
            raise typer.Exit(code)


ENGINE_DIED_EXIT_CODE = 3


def _key_option(name: str, value: str | None, file: Path | None) -> SecretStr | None:
    """A key from ``--NAME`` or ``--NAME-file`` (None: neither given), checked like every secret
    (``config.secret_problem``: blank, short, placeholder or unsendable keys are refused), naming the flag."""
    from sotrag.app.cli.common import fail
    from sotrag.app.config import secret_problem

    flag = "--" + name.replace("_", "-")
    if value is not None and file is not None:
        raise fail(f"give {flag} or {flag}-file, not both", 2)
    if file is not None:
        try:
            lines = file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"{flag}-file: cannot read {file}: {getattr(exc, 'strerror', None) or exc}", 2) from None
        value, flag = (lines[0].strip() if lines else ""), f"{flag}-file"
    if value is None:
        return None
    problem = secret_problem(value)
    if problem is not None:
        raise fail(f"{flag} is {problem}: give a real key", 2)
    if file is None:
        typer.echo(f"warning: {flag} is visible to every user of this machine (ps); prefer {flag}-file or "
                   f"SOTRAG_{name.upper()}", err=True)
    return SecretStr(value)


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address ``host`` resolves to, for uvicorn to serve on (``Server.serve(sockets)``),
    bound as asyncio's ``create_server`` would: SO_REUSEADDR, IPv6 sockets IPv6-only. Raises ``OSError``
    (``socket.gaierror`` for an unknown host)."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _socket_problem(exc: OSError | UnicodeError) -> str:
    if isinstance(exc, UnicodeError):
        return "not a valid host name"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    return exc.strerror or str(exc)


def _engine_nice(settings: Settings) -> int:
    nice = settings.server.engine_nice
    return nice if nice is not None else (10 if settings.engine.preset == "cpu" else 0)


def lower_engine_priority(nice: int) -> None:
    """Add ``nice`` to every thread of this process's child processes (vLLM's engine core and its workers).

    On a CPU the engine core computes on every core; at equal priority the server's one event loop then waits for
    the scheduler, and so do probes and streams (docs/RELIABILITY.md). Niceness is per thread on Linux, so each
    thread is set; threads started later inherit it. Best effort: nothing to do elsewhere, or when not allowed."""
    if nice <= 0:
        return
    import contextlib
    import os

    try:
        import psutil  # a dependency of vLLM, so present wherever an engine runs in this process
    except ImportError:
        return
    with contextlib.suppress(psutil.Error, OSError, AttributeError):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error, OSError):
                for thread in child.threads():
                    current = os.getpriority(os.PRIO_PROCESS, thread.id)
                    os.setpriority(os.PRIO_PROCESS, thread.id, min(19, current + nice))


def _preload(settings: Settings, with_index: bool) -> None:
    """Import the heavy libraries before the server listens. Importing holds Python's lock (GIL) for long
    stretches; done in the start thread it would stall the event loop, and with it /healthz, for seconds."""
    import contextlib
    import gc
    import importlib

    in_process = settings.engine.load_format != "dummy" and not settings.engine.remote  # remote: no vLLM here
    modules = ["vllm", "vllm.v1.engine.async_llm"] if in_process else []
    if with_index:
        modules += ["sentence_transformers", "sotrag.retrieval.index"]
    for name in modules:
        with contextlib.suppress(ImportError):  # reported, with its reason, when the engine or the index starts
            importlib.import_module(name)
    # The one full collection, now that nothing is served yet; frozen, the libraries' objects are never scanned
    # again. At ready only the engine's own start is left to freeze, without a full pass (freeze_startup_heap).
    gc.collect()
    gc.freeze()


async def _serve(
    settings: Settings, index_dir: str | None, sources: list[Path], host: str, port: int, sockets: list[socket.socket]
) -> int:
    """Serve until stopped. When the engine dies the server reports it (/readyz 503, new answers 503) for
    ``server.engine_death_grace_s``, then exits with ``ENGINE_DIED_EXIT_CODE`` so its supervisor (systemd,
    Kubernetes, docker --restart) starts a fresh process: a clean restart frees everything the dead engine held."""
    import uvicorn

    from sotrag.app.serving.app import create_app

    app = create_app(settings, index_dir=index_dir, demo_sources=sources)
    service = app.state.service
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=10,
        timeout_keep_alive=30,  # longer than clients' idle expiry (httpx, openai: 5 s): no request on a closing socket
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=sockets))
    log = logging.getLogger("sotrag.server")
    if port == 0 and sockets:  # the port the system chose, not 0
        port = sockets[0].getsockname()[1]
    log.info("sotrag: http://%s:%d (web UI at /, API docs at /docs); starting the engine...", host, port)
    started = asyncio.create_task(service.wait_started())
    await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
    if started.done() and service.state == "failed":  # the service has logged why, once
        server.should_exit = True
        await serving
        return 1
    if started.done():
        where = f"index {service.index_dir}" if service.index_dir else "no index (answers are ungrounded)"
        log.info("sotrag is ready at http://%s:%d with %s", host, port, where)
        if not settings.engine.remote:
            lower_engine_priority(_engine_nice(settings))
    died = asyncio.create_task(service.engine_died.wait())
    await asyncio.wait({serving, died}, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    if died.done() and not serving.done():
        grace = settings.server.engine_death_grace_s
        log.error("error: %s; exiting in %.0f s for the supervisor to restart sotrag", service.error, grace)
        await asyncio.sleep(grace)
        server.should_exit = True
        await serving
        return ENGINE_DIED_EXIT_CODE
    died.cancel()
    return 0 if server.started else 1
