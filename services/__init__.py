"""voxrelay services: one package per process, plus the shared runtime."""
