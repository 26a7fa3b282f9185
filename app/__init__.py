"""The SoT pipeline, the engines, the REST + Gradio server, the CLI and configuration."""
