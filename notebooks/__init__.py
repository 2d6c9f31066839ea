"""The ohq-pynq notebooks, delivered on a board by ``pynq get-notebooks`` (entry point
``pynq.notebooks``): quick start on the simulator, on-chip profiling, mixed-precision search."""
