"""Built-in methods, one sub-package each, and the `Method` interface they implement."""

from clairo_bench.methods.base import MethodConfig, Method, Recommendations, RunContext

__all__ = ["Method", "MethodConfig", "Recommendations", "RunContext"]
