"""Coverage-guided fuzzing of the vfio-user server (atheris); see ``fuzz/dispatch.py``."""
