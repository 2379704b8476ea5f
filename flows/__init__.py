"""Prefect wiring for stockcast: thin flows and tasks around ``stockcast``'s pure stages."""
