"""Launch and supervise a Triton server for the rmbg model repository."""
