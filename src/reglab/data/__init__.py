"""Datasets that work offline: data shipped inside installed packages, or fetched once from a
local package source with ``reglab data get NAME``. Loaders never touch the network.

Each classification loader returns ``((x_train, y_train), (x_test, y_test))`` tensors;
``image_patches`` returns one ``(n, size²)`` tensor.
"""

from reglab.data._store import DatasetNotFoundError, data_dir
from reglab.data.catalog import DatasetStatus, list_datasets
from reglab.data.digits import digits
from reglab.data.fetch import get_fashion_mnist, get_gutenberg, get_mnist
from reglab.data.idx import read_idx
from reglab.data.mnist import fashion_mnist, mnist
from reglab.data.patches import BUNDLED_IMAGES, image_patches
from reglab.data.teacher import teacher_student
from reglab.data.text import Corpus, gutenberg, tokenize

__all__ = [
    "BUNDLED_IMAGES",
    "Corpus",
    "DatasetNotFoundError",
    "DatasetStatus",
    "data_dir",
    "digits",
    "fashion_mnist",
    "get_fashion_mnist",
    "get_gutenberg",
    "get_mnist",
    "gutenberg",
    "image_patches",
    "list_datasets",
    "mnist",
    "read_idx",
    "teacher_student",
    "tokenize",
]
