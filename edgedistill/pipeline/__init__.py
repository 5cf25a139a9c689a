"""Stages: train, search, export, bench, report, teacher ranking and fine-tuning (what the CLI and the API call)."""
