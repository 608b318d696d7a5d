"""The named passes from a declared graph to the graph a backend lowers (`optimize.prepare`):
the rewrite engine, `stabilize` and the value-exact optimizer."""
