"""Stage 5, bin/export: a run's generator as a deployable MindIR (graph, sidecar, verb)."""
