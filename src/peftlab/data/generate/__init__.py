"""The offline mini-suite generator (``peftlab data generate``); see ``suite`` for the layout it writes."""

from peftlab.data.generate.suite import SuiteSizes, generate_suite

__all__ = ["SuiteSizes", "generate_suite"]
