"""peftlab: a reproducible study of parameter-efficient fine-tuning on timm Vision Transformers."""

__version__ = "0.1.0"
