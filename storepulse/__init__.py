"""Command line and process wiring: `storepulse up|ingest|flows|gateway`."""
