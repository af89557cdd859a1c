"""``voxrelay up``: start every service as a child process, keep them up, stop them in stages."""
