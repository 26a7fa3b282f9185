"""Retrieval settings from the environment (``SOTRAG_RETRIEVAL__...``), for the service and the retrieval CLI alike.

``RetrievalSettings`` is the ``retrieval`` section of the app's ``Settings``; ``from_env`` reads the same variables
where the app's settings are not loaded (``sotrag ingest``, ``search``, ``eval-retrieval``). The defaults are the
dataclasses' (``SearchConfig``), measured as docs/retrieval.md describes, so there is one place to change them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from sotrag.retrieval.errors import RetrievalError
from sotrag.retrieval.index_config import SearchConfig


class RetrievalSettings(BaseModel):
    """The embedding model of a new index and the hybrid search's fusion (``SOTRAG_RETRIEVAL__PAGE_WEIGHT=0``...)."""

    model_config = ConfigDict(allow_inf_nan=False)  # no weight means inf or nan

    embedding_model: str | None = Field(
        default=None,
        description="sentence-transformers name or folder for a new index (None: the index's own, all-MiniLM-L6-v2 "
        "for a new one); an existing index built with another model is refused",
    )
    dense_weight: float = Field(default=SearchConfig.dense_weight, ge=0, description="hybrid: weight of dense ranks")
    lexical_weight: float = Field(default=SearchConfig.lexical_weight, ge=0, description="hybrid: weight of BM25 ranks")
    rrf_k: int = Field(default=SearchConfig.rrf_k, ge=1, description="hybrid: reciprocal rank fusion's k")
    page_weight: float = Field(
        default=SearchConfig.page_weight, ge=0, le=1,
        description="hybrid: a chunk gains this times the score of the best other candidate of its page (0: off)",
    )

    def search_config(self, base: SearchConfig | None = None) -> SearchConfig:
        """``base`` (the defaults) with these fusion settings."""
        import dataclasses

        return dataclasses.replace(
            base or SearchConfig(), dense_weight=self.dense_weight, lexical_weight=self.lexical_weight,
            rrf_k=self.rrf_k, page_weight=self.page_weight,
        )


class _Env(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOTRAG_", env_nested_delimiter="__", env_file=".env", extra="ignore")

    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)


def from_env() -> RetrievalSettings:
    """``SOTRAG_RETRIEVAL__*`` (and a ``.env`` file), as the app's ``Settings().retrieval`` reads them; a bad value
    is a ``RetrievalError`` naming the variable."""
    try:
        return _Env().retrieval
    except ValidationError as exc:
        bad = "; ".join(
            "SOTRAG_" + "__".join(str(x) for x in e["loc"]).upper() + f": {e['msg']}" for e in exc.errors()
        )
        raise RetrievalError(bad) from None
    except SettingsError as exc:  # SOTRAG_RETRIEVAL as JSON that does not parse
        where = " in .env" if "DotEnv" in str(exc) else ""
        raise RetrievalError(f"SOTRAG_RETRIEVAL{where}: not valid JSON ({exc.__cause__ or exc})") from None
    except UnicodeDecodeError as exc:
        raise RetrievalError(f"settings file .env: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
