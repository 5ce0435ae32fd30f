"""Hand an artifact to an existing serving engine: triton.py (a Triton model repository), ray.py (Ray Serve)."""
