"""Collaborative filtering from interactions alone: closed-form (pop, itemknn, ease, gfcf, bspm) and trained
(bpr, lightgcn, simgcl, xsimgcl, directau, multvae)."""
