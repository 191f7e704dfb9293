"""The hosted-API gateway (DESIGN.md section 3): HTTP protocols over Triton, durable jobs, hosted files."""
