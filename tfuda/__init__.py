"""tfuda: adapt an image classifier from a labeled source domain to an unlabeled target domain.

Entry points: `python -m tfuda.train`, `python -m tfuda.predict`; export with
`python -m export.savedmodel`.
"""

__version__ = "0.1.0"
