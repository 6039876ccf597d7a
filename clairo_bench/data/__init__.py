"""Data layer: datasets, importers, the shared leave-one-out split."""

from clairo_bench.data.dataset import Dataset, DataError, ItemCodes, ItemMeta
from clairo_bench.data.split import Split, build_split

__all__ = ["Dataset", "DataError", "ItemCodes", "ItemMeta", "Split", "build_split"]
