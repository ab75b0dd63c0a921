"""Metabolic networks as bipartite graphs: simulate them, and recover their kinetics with a GNN."""
