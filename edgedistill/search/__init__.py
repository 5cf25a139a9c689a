"""Budget → width config: cost models and latency tables, UPEMs, search strategies (docs/method.md)."""

from edgedistill.search.costs import COST_MODELS, CostEstimator, CostInputs, Costs, over_limits
from edgedistill.search.lut import LatencyLUT, LatencyPredictor
from edgedistill.search.select import Candidate, SearchResult, UnlabeledImages, search_widths
from edgedistill.search.strategies import SEARCH_STRATEGIES, Problem, SearchSettings
from edgedistill.search.upem import UPEMS

__all__ = [
    "COST_MODELS",
    "SEARCH_STRATEGIES",
    "UPEMS",
    "Candidate",
    "CostEstimator",
    "CostInputs",
    "Costs",
    "LatencyLUT",
    "LatencyPredictor",
    "Problem",
    "SearchResult",
    "SearchSettings",
    "UnlabeledImages",
    "over_limits",
    "search_widths",
]
