"""What every ``sotrag`` command shares: one-line errors, quiet engine logs, the option choices."""

from __future__ import annotations

import os
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

from sotrag.app.config import EngineConfig, Settings

err_console = Console(stderr=True)


class ModeChoice(str, Enum):
    sot = "sot"
    normal = "normal"
    auto = "auto"


class PresetChoice(str, Enum):
    cpu = "cpu"
    gpu = "gpu"


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line to stderr; return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def quiet_vllm(verbose: bool) -> None:
    """stdout is for the answer (and ``--json``): vLLM's logs go to stderr, and without ``-v`` only its errors;
    Python warnings (torch, transformers, pypdf, vLLM) are hidden too, here and in vLLM's worker processes."""
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    if verbose:
        return
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # inherited by the engine-core process
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # torch's C++ warnings (NUMA binding, ...)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("vllm", "torch", "transformers", "sentence_transformers", "pypdf", "faiss", "langchain"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_engine_extra(extra: dict[str, Any], verbose: bool) -> dict[str, Any]:
    """vLLM's engine options for a quiet terminal: no weight-loading progress bar unless ``-v`` (vLLM passes
    its own ``disable=`` to tqdm, so TQDM_DISABLE cannot hide it). The user's own ``extra`` wins."""
    return dict(extra) if verbose else {"use_tqdm_on_load": False, **extra}


M = TypeVar("M", bound=BaseModel)


def problem(err: Any) -> str:
    """What pydantic found wrong, and the value given (when there was one)."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg if err["type"] in ("missing", "value_error") else f"{msg}, got {err.get('input')!r}"


def load_settings(**given: Any) -> Settings:
    """``Settings()`` from the environment and ``.env``, and ``given`` (the command line's, already checked), which
    win: every check, those of the keys taken together included, sees all sources at once. A bad value is one
    line naming its variable."""
    from pydantic_settings import SettingsError

    try:
        return Settings(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as exc:
        problems = [f"{_variable(e['loc'])}: {problem(e)}" if e["loc"] else problem(e) for e in exc.errors()]
        prefix = "invalid setting " if all(e["loc"] for e in exc.errors()) else "invalid settings: "
        raise fail(prefix + "; ".join(problems), 2) from None
    except SettingsError as exc:  # a value pydantic-settings could not even parse (a complex field's JSON)
        raise fail(f"invalid setting {_unparsed(exc)}", 2) from None
    except UnicodeDecodeError as exc:
        raise fail(f"invalid settings file .env: not UTF-8 text ({exc.reason} at byte {exc.start})", 2) from None


def _variable(loc: tuple[Any, ...]) -> str:
    """The environment variable of an error's location; a field read by its alias is named by the alias."""
    from pydantic import AliasChoices

    name = "__".join(str(x) for x in loc).upper()
    if not name.startswith("SOTRAG_"):
        return "SOTRAG_" + name
    for field in Settings.model_fields.values():  # pydantic names the first alias: name the one that is set
        aliases = field.validation_alias
        if isinstance(aliases, AliasChoices) and name in aliases.choices:
            given = [a for a in aliases.choices if isinstance(a, str) and a in os.environ]
            return given[0] if given else name
    return name


def _unparsed(exc: Exception) -> str:
    """``SettingsError`` names the field only (``error parsing value for field "engine" from source ...``): name
    the variables that set it, and why their value could not be parsed."""
    import re

    match = re.search(r'field "([^"]+)" from source "(\w+)"', str(exc))
    field, source = (match.group(1), match.group(2)) if match else ("", "")
    prefix = "SOTRAG_" + field.upper()
    variables: Any = os.environ
    if source == "DotEnvSettingsSource":
        from dotenv import dotenv_values

        variables = dotenv_values(".env")
    names = sorted(n for n in variables if n.upper() == prefix or n.upper().startswith(prefix + "__"))
    where = ", ".join(names) or prefix
    if source == "DotEnvSettingsSource":
        where += " in .env"
    cause = exc.__cause__
    why = f"not valid JSON ({cause})" if cause is not None else str(exc)
    return f"{where}: {why}"


def with_options(config: M, /, *, flags: dict[str, str] | None = None, **options: Any) -> M:
    """``config`` with the command-line options that were given (None: not given), validated like the settings
    themselves (``model_copy(update=...)`` would skip validation), so ``--tensor-parallel-size 0`` is one line
    naming the option. ``flags`` names the option of a field whose flag is not ``--FIELD-NAME`` (a repeatable
    ``--allowed-host`` sets ``allowed_hosts``): an error names the flag the user can type."""
    given = {name: value for name, value in options.items() if value is not None}
    if not given:
        return config
    try:
        return type(config).model_validate({**config.model_dump(), **given})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            flag = (flags or {}).get(name, f"--{name.replace('_', '-')}")
            where = flag if name in given else f"setting {name or type(config).__name__}"
            problems.append(f"{where}: {problem(err)}")
        raise fail("; ".join(problems), 2) from None


# The in-process engine's parallelism, shared by ``ask`` and ``serve`` (None: the setting's value).
TensorParallelOption = Annotated[
    int | None, typer.Option(help="GPUs per model copy, within one node (vLLM tensor parallelism)")
]
PipelineParallelOption = Annotated[
    int | None, typer.Option(help="pipeline stages, e.g. across nodes with --distributed-executor-backend ray")
]
DataParallelOption = Annotated[int | None, typer.Option(help="model copies in this engine; answers are spread")]
BackendOption = Annotated[
    str | None, typer.Option(help="mp (one node), ray (several nodes), uni or external_launcher; default: vLLM's")
]


def engine_settings(
    settings: Settings, *, urls: list[str] | None = None, verbose: bool = False, **options: Any
) -> EngineConfig:
    """The engine settings with the command line's options applied (``with_options``), ``--engine-url`` and, without
    ``-v``, a quiet engine (``quiet_engine_extra``). With engine URLs, ``--model`` names the served model (default:
    the server's only one); each URL is checked."""
    from sotrag.app.engines.base import EngineError
    from sotrag.app.engines.remote_pool import split_url

    cfg = with_options(settings.engine, flags={"urls": "--engine-url"}, urls=list(urls) if urls else None, **options)
    for url in cfg.urls:
        try:
            split_url(url)
        except EngineError as exc:
            raise fail(str(exc), 2) from None
    return cfg.model_copy(update={"extra": quiet_engine_extra(cfg.extra, verbose)})
