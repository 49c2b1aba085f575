"""The composition root: the `soundscape` command, the demo and the tools that wire
several rooms together. Nothing imports this package but `python -m soundscape`."""
