"""SoT-R for ``mode="auto"``: should this question use SoT, and can the engine afford it now?

``base`` (the ``Router`` protocol, ``RouteDecision``), ``classifier`` (the trained MiniLM router and its
artifact), ``heads`` (its RBF SVM head), ``llm_router``, ``load_policy``, ``router`` (``SoTRouter`` joins
classifier and policy), ``factory`` and ``training``. May import ``engines.base``, ``config``, ``prompts`` and
``retrieval``; never the pipeline, serving or the CLI.
"""
