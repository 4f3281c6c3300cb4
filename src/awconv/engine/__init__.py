"""Training engines on Lightning: modules, data modules, callbacks and reports."""
