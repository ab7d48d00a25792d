"""Training with Caffe's semantics: data transforms and data layers, solvers, snapshots."""
