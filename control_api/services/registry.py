"""Imports every module that registers a sweep (see control_api.services.sweeps)."""

import importlib

SWEEP_MODULES: tuple[str, ...] = ("control_api.services.billing", "control_api.services.visit_outcomes",
                                  "control_api.services.booking", "control_api.services.recordings")

for _name in SWEEP_MODULES:
    importlib.import_module(_name)
