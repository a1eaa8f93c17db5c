"""The data layer: the task table, VTAB-1k list files, the offline mini-suite generator, uint8 shards.

Light at import: ``peftlab.data.shards.load_split`` and friends import torch / safetensors when called.
See ``docs/data.md``.
"""
