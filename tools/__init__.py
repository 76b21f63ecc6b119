"""Developer tools that are neither device nor training code (make arm-check)."""
