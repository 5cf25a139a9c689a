"""Run reports: merge train/search/export/bench JSON, render markdown and plots (`edgedistill report`)."""
