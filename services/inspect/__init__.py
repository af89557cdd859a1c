"""Looking back at recorded conversations: ``voxrelay sessions``, ``export``, ``replay``."""
