"""GPU-side measurement: dcgm-exporter's series from NVML, where dcgm-exporter is not installed."""
