"""The shared training engine: train step, EMA, schedules, checkpoints, evaluation, loop."""
