"""Shared by every method: the layer-wise calibration engine, OBS math (Eq. 9-11), unit budgets and selection,
surgery that removes heads and channels (Eq. 1-3, 13)."""
