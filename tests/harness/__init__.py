"""Real processes for multi-process tests and `make cluster-demo`: Redis, Tritons, gateways, webhook receivers."""
