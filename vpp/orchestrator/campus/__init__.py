"""The campus aggregator: fleet state, location totals, dispatch strategies and its process."""
