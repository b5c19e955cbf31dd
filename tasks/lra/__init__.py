"""Long Range Arena (Tay et al. 2021) as the xLSTM paper runs it (Table 6): ListOps and Pathfinder generated
offline, CIFAR-10 (grayscale and RGB), AAN Retrieval and IMDB Text from files, each a pooled (or pair) classifier."""
from .datasets import LRA_TASKS
from .examples import DataMissing, Examples

__all__ = ["DataMissing", "Examples", "LRA_TASKS"]
