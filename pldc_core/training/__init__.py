"""Training: the loop, one step, hooks, checkpoints and the `pldc train` command."""
