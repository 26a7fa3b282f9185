"""sotrag: question answering over your own documents, fast, by Skeleton-of-Thought parallel decoding."""

__version__ = "0.1.0"
