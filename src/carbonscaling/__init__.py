"""carbonscaling: carbon-aware scaling laws for LLM training.

The public API is imported lazily so that ``carbonscaling --help`` starts instantly::

    import carbonscaling as cs
    cs.estimate(model="llama3.1-405b", device="H100", region="us-east5").to_dict()
    cs.run(cs.RunSpec(model="llama3.1-405b", carbon=cs.CarbonSettings(region="us-east5")))
    cs.run_carbon("bloom-176b", "A100-80GB", n_devices=384, device_hours=1_082_990, utilization=0.3)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "estimate": "carbonscaling.chain",
    "run": "carbonscaling.chain",
    "Estimate": "carbonscaling.chain",
    "RunSpec": "carbonscaling.specs",
    "HardwareSpec": "carbonscaling.specs",
    "LayoutPins": "carbonscaling.specs",
    "Recipe": "carbonscaling.specs",
    "SearchSettings": "carbonscaling.specs",
    "CarbonSettings": "carbonscaling.specs",
    "run_carbon": "carbonscaling.carbon",
    "ideal_carbon": "carbonscaling.carbon",
    "grid_intensity": "carbonscaling.carbon",
    "CarbonResult": "carbonscaling.carbon",
    "ModelSpec": "carbonscaling.model_spec",
    "from_preset": "carbonscaling.scaling",
    "named_model": "carbonscaling.scaling",
    "resolve_model": "carbonscaling.scaling",
    "load_system": "carbonscaling.hardware",
    "project": "carbonscaling.hardware",
    "Device": "carbonscaling.hardware",
    "System": "carbonscaling.hardware",
    "Layout": "carbonscaling.perf.layout",
    "TrainingOptions": "carbonscaling.perf.options",
    "CarbonScalingError": "carbonscaling.errors",
    "InputError": "carbonscaling.errors",
    "InfeasibleError": "carbonscaling.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'carbonscaling' has no attribute {name!r}")
