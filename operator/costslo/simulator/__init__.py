"""The lab's stand-in for GPUs and model servers.

For every running pod whose template names a performance profile, it serves the series vLLM, TGI, Triton
or SGLang and dcgm-exporter would serve, driven by an offered load per Deployment, plus the exact ground
truth so that computed costs can be checked.
"""

from costslo.simulator.profiles import (
    OFFERED_LOAD_ANNOTATION,
    OVERRIDES_ANNOTATION,
    PROFILE_ANNOTATION,
    RUNTIME_ANNOTATION,
    PerformanceProfile,
    ProfileCatalog,
)
from costslo.simulator.simulation import Simulation

__all__ = [
    "OFFERED_LOAD_ANNOTATION",
    "OVERRIDES_ANNOTATION",
    "PROFILE_ANNOTATION",
    "RUNTIME_ANNOTATION",
    "PerformanceProfile",
    "ProfileCatalog",
    "Simulation",
]
