"""Budget → width config."""

from edgedistill.search.exhaustive import SEARCH_STRATEGIES, Candidate, SearchResult, search_widths

__all__ = ["SEARCH_STRATEGIES", "Candidate", "SearchResult", "search_widths"]
