"""Engines: what the pipeline generates with. ``base`` is the ``Engine`` protocol, ``EngineBase`` (its optional
capabilities with defaults) and the request, delta and load types; ``vllm`` is the in-process vLLM ``AsyncLLM``;
``remote`` is the engine over vLLM servers, made of ``remote_transport`` (HTTP: ``remote_pool`` picks servers,
``remote_stream`` reads a streamed completion) and ``remote_tokens`` (prompt ids, by ``local_tokenizer`` or the
server's ``/tokenize``: ``server_tokenizer``); ``model_source`` finds the model folder; ``chat_ids`` builds prompt
ids; ``local_tokenizer`` is the Hugging Face tokenizer both engines encode with; ``lru`` is the bounded cache the
tokenizing code shares.

May import ``sotrag.app.config`` and ``sotrag.prompts``; never the pipeline, routing, serving or the CLI.
"""
