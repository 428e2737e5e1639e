"""FANG's steps before pruning: context clustering (PCA + KMeans), cluster-neuron Taylor scores (Eq. 5), neuron
groups (linear assignment, SNGR), token re-weighting (Eq. 6), functional complexity and allocation (Eq. 8)."""
