"""The web server: ``app`` (FastAPI app and REST routes), ``openai_api`` (the OpenAI-compatible routes; their
models in ``openai_protocol``), ``ui`` (Gradio), ``service`` (what the routes call: answers, documents, readiness),
``api_models``, ``metrics`` and ``disconnect``. A question goes ``app`` -> ``service`` -> ``sotrag.app.pipeline``
-> ``engines``.

May import everything in ``sotrag.app`` except the CLI.
"""
