"""Emulator fidelity tests; a package so its conftest never shadows the root one."""
