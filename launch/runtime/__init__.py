"""The shared runtime of the launchers: mesh and distributed init, checkpointing, metric writers,
progress bars, the workdir layout and host-memory settings. Only ``launch/`` imports it."""
