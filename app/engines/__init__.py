"""Engines: what the pipeline generates with. ``base`` is the ``Engine`` protocol and its request, delta and load
types; ``vllm`` is the in-process vLLM ``AsyncLLM``; ``model_source`` finds the model folder;
``chat_ids`` builds prompt ids; ``lru`` is the bounded cache the tokenizing code shares.

May import ``sotrag.app.config`` and ``sotrag.prompts``; never the pipeline, routing, serving or the CLI.
"""
