"""Training, results and tables: the Lightning + Hydra layer over ``xlstm``, ``kernels`` and ``tasks``."""
