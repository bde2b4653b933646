"""Clustering: the bus (membership, leadership, RPC, messages) and actor placement."""
