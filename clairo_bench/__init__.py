"""clairo-bench: a benchmark harness for multimodal generative recommendation."""

__version__ = "0.1.0"
