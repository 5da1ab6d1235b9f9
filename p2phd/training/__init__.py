"""Stage 2, bin/train: the G/D steps, the epoch loop, schedule, stats, web page, saving
and resuming.
"""
