"""Hardware side of ohq-pynq: the conv IP core's register map (``regmap``), its bit-exact numpy
functional model (``core_model``), per-board core sizes (``boards.json``) and the accelerator
backends built on them. Nothing here imports ``pynq`` at module level.
"""
