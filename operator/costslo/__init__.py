"""costslo: the cost per delivered request of AI inference workloads as a live, enforced SLO."""

__version__ = "0.1.0"
