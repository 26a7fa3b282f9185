"""Triton GPU kernels, each beside a plain PyTorch reference."""
