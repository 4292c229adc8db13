"""Command line and process wiring: `storepulse up|ingest|flows|gateway`."""

import sys

# How one storepulse process starts another (and tests and benchmarks start storepulse): this Python,
# with -P so the working directory is not put on sys.path, where a directory named like one of our
# packages (a data directory called flows/, a folder called state/) would shadow it: seen as
# "cannot import name 'ensure_recovery_dir' from 'flows.recovery' (unknown location)".
STOREPULSE = (sys.executable, "-P", "-m", "storepulse")
