"""pytest plugin entry point for ssetap (fixtures arrive with the replay package)."""
