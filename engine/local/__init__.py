"""Local Convex-compatible deployments for tests and the demo (see README.md here)."""

from engine.local.launcher import FAULT_MODES, FaultMode, LocalDeployment, LocalFleet

__all__ = ["FAULT_MODES", "FaultMode", "LocalDeployment", "LocalFleet"]
