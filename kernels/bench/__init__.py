"""GPU benchmarks of the kernels: ``python -m kernels.bench mlstm|slstm`` writes results/kernels/<op>_<gpu>.csv."""
