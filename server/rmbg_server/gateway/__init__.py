"""The hosted-API gateway (README, "Gateway"): HTTP protocols over Triton, durable jobs, hosted files."""
